//! `keelctl network reload [--restart-attached]` in the event loop: read and plan at
//! once ([`EventLoop::reload_networks`]); a plan that needs no container stopped is
//! applied there and then. With `--restart-attached`, the containers of networks being
//! rebuilt or removed are asked to stop through the manager (their stop signal, SIGKILL
//! after their stop timeout), and the loop goes on: each turn,
//! [`EventLoop::continue_network_reload`] checks whether they have all let go of their
//! networks, then applies the plan, starts them again (dependencies first) and answers
//! the requests waiting for it. PID 1 never waits for a container here.

use super::EventLoop;
use crate::connections::ConnectionId;
use crate::network::live::{self, NetworkReloadError};
use crate::network::reload::{self, NetworkPlan, NetworkReloadReport};
use keel_netconf::config::NetworkConfig;
use keel_supervisor::control::{Command, Response};
use log::{info, warn};
use std::path::Path;
use std::time::Instant;

/// Requests answered when a pending reload is done: (request id, connection).
type Waiters = Vec<(u64, ConnectionId)>;

/// A reload waiting for its containers to stop.
pub(super) struct PendingReload {
    plan: NetworkPlan,
    new: NetworkConfig,
    report: NetworkReloadReport,
    /// Requests answered when it is done.
    waiters: Waiters,
    /// `keelctl reload` requests: their containers' half runs when it is done.
    then_containers: Waiters,
}

impl EventLoop {
    /// Re-read /etc/keel/network.toml and apply what changed (see `network::reload`). The
    /// report is final when its `waiting_for` is empty; otherwise the named containers are
    /// stopping and the change is applied once they have (register for the final report
    /// with [`wait_network_reload`](Self::wait_network_reload)). Nothing has changed when
    /// this returns an error.
    pub fn reload_networks(&mut self, restart_attached: bool) -> Result<NetworkReloadReport, NetworkReloadError> {
        self.reload_networks_from(Path::new(keel_netconf::config::CONFIG_PATH), restart_attached)
    }

    /// [`reload_networks`](Self::reload_networks) with the declaration read from `path`.
    pub fn reload_networks_from(&mut self, path: &Path, restart_attached: bool) -> Result<NetworkReloadReport, NetworkReloadError> {
        if let Some(pending) = &self.network_reload {
            return Err(NetworkReloadError::Busy(pending.report.waiting_for.clone()));
        }
        let network = self.network.clone().ok_or(NetworkReloadError::NoNetwork)?;
        if self.late.is_some() || network.borrow().firewall_held {
            return Err(NetworkReloadError::BootNotDone);
        }
        let new = live::read_config(path)?;
        let plan = {
            let host = network.borrow();
            reload::plan(&host.config, &live::attached_by_network(&host), &new, restart_attached)?
        };
        let mut report = NetworkReloadReport::of(&plan);
        if plan.restart.is_empty() {
            report.warnings = live::apply(&mut network.borrow_mut(), &plan, new)?;
            return Ok(report);
        }
        let now = Instant::now();
        for name in &plan.restart {
            info!("network reload: stopping container {name} (its network changes)");
            match self.manager.as_mut().map(|m| m.stop(name, now)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => report.warnings.push(format!("container {name}: {e}")),
                None => report.warnings.push(format!("container {name}: no container manager to stop it")),
            }
        }
        report.waiting_for = plan.restart.clone();
        self.network_reload = Some(PendingReload { plan, new, report: report.clone(), waiters: Vec::new(), then_containers: Vec::new() });
        // Containers that were not running any more have let go already.
        match self.try_finish_network_reload(now) {
            Some((result, _, _)) => result,
            None => Ok(report),
        }
    }

    /// Answer request `id` on `channel` with the final report of the reload under way
    /// (at once when there is none any more).
    pub fn wait_network_reload(&mut self, id: u64, channel: ConnectionId) {
        match self.network_reload.as_mut() {
            Some(pending) => {
                pending.waiters.push((id, channel));
                self.job_started(channel);
            }
            None => self.reply(channel, &Response::failure(id, "no network reload under way")),
        }
    }

    /// The `reload` request: network.toml first (so containers are checked against the
    /// networks in force), then the container declarations. A network change that is
    /// refused changes nothing, containers included; one that waits for containers to
    /// stop (`--restart-attached`) reloads the containers when it is done.
    pub(super) fn reload_request(&mut self, id: u64, restart_attached: bool, channel: ConnectionId) {
        if self.network.is_none() {
            let note = "network.toml: not re-read (networking is not set up on this host)".to_string();
            let response = self.reconcile_request(id, Command::Reload { restart_attached }, Some(note));
            self.reply(channel, &response);
            return;
        }
        match self.reload_networks(restart_attached) {
            Ok(report) if report.waiting_for.is_empty() => {
                let response = self.reconcile_request(id, Command::Reload { restart_attached }, Some(network_note(&report)));
                self.reply(channel, &response);
            }
            Ok(_) => {
                if let Some(pending) = self.network_reload.as_mut() {
                    pending.then_containers.push((id, channel));
                    self.job_started(channel);
                }
            }
            Err(e) => {
                warn!("reload: network.toml: {e}");
                self.reply(channel, &Response::failure(id, format!("network.toml: {e}; nothing was changed")));
            }
        }
    }

    /// The `network_reload` request.
    pub(super) fn network_reload_request(&mut self, id: u64, restart_attached: bool, channel: ConnectionId) {
        match self.reload_networks(restart_attached) {
            Ok(report) if report.waiting_for.is_empty() => self.reply(channel, &Response::success(id, report)),
            Ok(_) => self.wait_network_reload(id, channel),
            Err(e) => {
                warn!("network reload: {e}");
                self.reply(channel, &Response::failure(id, e.to_string()));
            }
        }
    }

    /// Once every container of the pending reload has let go of its network: apply it,
    /// start them again, answer the waiters. Called every turn (from `tick_manager`).
    pub(super) fn continue_network_reload(&mut self, now: Instant) {
        let Some((result, waiters, then_containers)) = self.try_finish_network_reload(now) else { return };
        let response = |id| match &result {
            Ok(report) => Response::success(id, report),
            Err(e) => Response::failure(id, e.to_string()),
        };
        for (id, channel) in waiters {
            self.reply(channel, &response(id));
            self.job_finished(channel, now);
        }
        for (id, channel) in then_containers {
            let response = match &result {
                Ok(report) => self.reconcile_request(id, Command::Reload { restart_attached: true }, Some(network_note(report))),
                Err(e) => Response::failure(id, format!("network.toml: {e}; container declarations were not re-read")),
            };
            self.reply(channel, &response);
            self.job_finished(channel, now);
        }
    }

    /// The pending reload's outcome and waiters once its containers have stopped (None:
    /// not yet, or no reload pending).
    fn try_finish_network_reload(&mut self, now: Instant) -> Option<(Result<NetworkReloadReport, NetworkReloadError>, Waiters, Waiters)> {
        let (pending, network) = (self.network_reload.as_mut()?, self.network.clone()?);
        let attached = live::attached_by_network(&network.borrow());
        let still: Vec<String> = pending.plan.disturbed().flat_map(|n| attached.get(n).cloned().unwrap_or_default()).collect();
        if !still.is_empty() {
            // A container of those networks that started meanwhile (a restart policy's
            // backoff ended) is stopped too and started again with the others.
            let newcomers: Vec<String> = still.iter().filter(|n| !pending.plan.restart.contains(n)).cloned().collect();
            for name in newcomers {
                info!("network reload: stopping container {name} too (it started on a network being changed)");
                if let Some(Err(e)) = self.manager.as_mut().map(|m| m.stop(&name, now)) {
                    pending.report.warnings.push(format!("container {name}: {e}"));
                }
                pending.plan.restart.push(name);
            }
            pending.report.waiting_for = still;
            return None;
        }
        let PendingReload { plan, new, mut report, waiters, then_containers } = self.network_reload.take()?;
        report.waiting_for.clear();
        report.restarted = plan.restart.clone();
        let applied = live::apply(&mut network.borrow_mut(), &plan, new);
        // Started again whether or not the change went through (then on the old network).
        let start_problems = self.start_again(&plan.restart, now);
        let result = applied.map(|warnings| {
            report.warnings.extend(warnings);
            report.warnings.extend(start_problems);
            info!("network reload: done; {} container(s) started again", plan.restart.len());
            report
        });
        if let Err(e) = &result {
            warn!("network reload: {e} (its containers were started again: {})", plan.restart.join(", "));
        }
        Some((result, waiters, then_containers))
    }

    /// Start `names` again, dependencies first; one problem per container that did not.
    fn start_again(&mut self, names: &[String], now: Instant) -> Vec<String> {
        let Some(manager) = self.manager.as_mut() else { return Vec::new() };
        let mut order: Vec<String> = manager.stop_order().into_iter().rev().map(|n| n.to_string()).filter(|n| names.contains(n)).collect();
        order.extend(names.iter().filter(|n| !order.contains(n)).cloned().collect::<Vec<_>>());
        let mut problems = Vec::new();
        for name in order {
            match manager.start(&name, now) {
                Ok(_) => info!("network reload: container {name} started again"),
                Err(e) => problems.push(format!("container {name} did not start again: {e}")),
            }
        }
        problems
    }
}

/// What a reload did with network.toml, as the lines `keelctl network reload` prints.
fn network_note(report: &NetworkReloadReport) -> String {
    let lines = report.lines();
    if lines.is_empty() {
        return "network.toml: unchanged".to_string();
    }
    lines.iter().map(|l| format!("network.toml: {l}")).collect::<Vec<_>>().join("\n")
}
