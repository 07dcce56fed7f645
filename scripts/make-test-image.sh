#!/usr/bin/env bash
# Builds a multi-layer OCI image from a busybox root filesystem with independent tools
# (umoci for the layers, skopeo for the archives), for keel's image tests and benchmark.
#
#   scripts/make-test-image.sh OUT [FILLER_LAYERS] [FILLER_KIB]
#
# OUT/layout             OCI layout, tag "test"  (oci:OUT/layout:test)
# OUT/image.oci.tar      the same as an OCI archive        (skopeo copy … oci-archive:)
# OUT/image.docker.tar   the same as a docker archive      (skopeo copy … docker-archive:)
#
# Layers: 1 busybox + files; 2 deletions, a changed file, a removed directory, a hard link,
# a setuid file, ownership; FILLER_LAYERS layers of FILLER_KIB KiB each; last, a hand-made
# layer with an opaque directory and a hard link to a file of a lower layer. Config:
# Entrypoint ["/bin/sh","-c"], Cmd printing MARKER, Env MARKER=from-image, WorkingDir /srv.
set -euo pipefail
out=$1
fillers=${2:-0}
filler_kib=${3:-256}
layout=$out/layout
bundle=$out/bundle
rootfs=$bundle/rootfs
rm -rf "$out"
mkdir -p "$out"
umoci init --layout "$layout"
umoci new --image "$layout:test"
umoci unpack --image "$layout:test" "$bundle" >/dev/null

# Commit the bundle's changes as one layer, and unpack again: a repack is a diff against
# the bundle's last unpack, so without it the next layer would repeat this one.
layer() {
  umoci repack --image "$layout:test" "$bundle"
  rm -rf "$bundle"
  umoci unpack --image "$layout:test" "$bundle" >/dev/null
}

mkdir -p "$rootfs"/{bin,etc,srv/old,var/cache,data,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh ls cat echo env id pwd sleep stat wc; do ln -s busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$rootfs/etc/group"
echo one >"$rootfs/etc/motd"
echo gone >"$rootfs/etc/deleted"
echo old >"$rootfs/srv/old/file"
echo c1 >"$rootfs/var/cache/c1"
echo shared >"$rootfs/data/orig"
chown 1000:1000 "$rootfs/data/orig"
chmod 640 "$rootfs/data/orig"
layer

rm "$rootfs/etc/deleted"
rm -r "$rootfs/srv/old"
mkdir "$rootfs/srv/new"
echo new >"$rootfs/srv/new/file"
echo two >"$rootfs/etc/motd"
ln "$rootfs/data/orig" "$rootfs/data/link"
echo '#!/bin/sh' >"$rootfs/bin/suid"
chmod 4755 "$rootfs/bin/suid"
layer

for i in $(seq 1 "$fillers"); do
  mkdir -p "$rootfs/filler/$i"
  head -c "$((filler_kib * 1024))" /dev/urandom >"$rootfs/filler/$i/blob"
  for j in $(seq 1 20); do echo "$i.$j" >"$rootfs/filler/$i/small-$j"; done
  [ "$i" -gt 1 ] && rm -f "$rootfs/filler/$((i - 1))/small-1"
  layer
done

python3 - "$out/opaque.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind, data=b"", link="", mode=0o644):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
        info.uid = info.gid = 0
        info.mtime = 1700000000
        t.addfile(info, io.BytesIO(data))
    add("var/cache", tarfile.DIRTYPE, mode=0o755)
    add("var/cache/.wh..wh..opq", tarfile.REGTYPE)
    add("var/cache/c2", tarfile.REGTYPE, b"c2\n")
    add("data/xlink", tarfile.LNKTYPE, link="data/orig")
PY
umoci raw add-layer --image "$layout:test" "$out/opaque.tar"
umoci config --image "$layout:test" \
  --config.entrypoint /bin/sh --config.entrypoint -c \
  --config.cmd 'echo "MARKER=$MARKER uid=$(id -u) pwd=$(pwd) motd=$(cat /etc/motd) cache=$(ls /var/cache) deleted=$(test -e /etc/deleted && echo present || echo absent)"' \
  --config.env MARKER=from-image --config.workingdir /srv --config.exposedports 8080/tcp
umoci gc --layout "$layout"
rm -rf "$bundle" "$out/opaque.tar"
skopeo copy -q "oci:$layout:test" "oci-archive:$out/image.oci.tar"
skopeo copy -q "oci:$layout:test" "docker-archive:$out/image.docker.tar:keel/test:latest"
