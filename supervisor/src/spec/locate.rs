//! Finding the line of a key in TOML text, so that semantic errors (found after
//! parsing, such as contradictions) can name the line as parse errors do.

/// The 1-based line where `path` (e.g. `["resources", "pids_max"]`) is defined: a
/// `key = …` line inside the right table, or the `[table]` header for a table path.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let (key, table) = path.split_last()?;
    let wanted_table = table.join(".");
    let full = path.join(".");
    let mut current = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            let is_array = header.starts_with('[');
            let name = header.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string();
            current = if is_array {
                let count = array_counts.entry(name.clone()).or_insert(0);
                *count += 1;
                format!("{name}[{}]", *count - 1)
            } else {
                name.clone()
            };
            if name == full || current == full {
                return Some(index + 1);
            }
            continue;
        }
        let Some((left, _)) = line.split_once('=') else { continue };
        let left = left.trim().trim_matches('"');
        if current == wanted_table && left == *key {
            return Some(index + 1);
        }
        if current.is_empty() && table.len() == 1 && left == table[0] && line.contains('{') {
            return Some(index + 1); // inline table: `resources = { pids_max = 5 }`
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "image = \"/img\"\nnetwork = \"none\"\nports = [\"80:80\"]\n\n[resources]\npids_max = 5\n\n[[mounts]]\ntarget = \"/x\"\n";

    #[test]
    fn finds_top_level_table_keys_and_headers() {
        assert_eq!(line_of(TEXT, &["network"]), Some(2));
        assert_eq!(line_of(TEXT, &["ports"]), Some(3));
        assert_eq!(line_of(TEXT, &["resources", "pids_max"]), Some(6));
        assert_eq!(line_of(TEXT, &["mounts"]), Some(8));
        assert_eq!(line_of(TEXT, &["pids_max"]), None);
        assert_eq!(line_of(TEXT, &["mounts[0]", "target"]), Some(9));
        assert_eq!(line_of(TEXT, &["mounts[0]"]), Some(8));
    }
}
