//! Start and stop commands: `%IP%` expansion and running them through `/bin/sh -c` without
//! ever blocking the daemon.

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::journal::Journal;

/// How long a command may run before it is killed. knockd waits forever; a hung iptables call
/// should not pile up processes.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// Replaces every `%IP%` with the source address.
pub fn expand(template: &str, ip: IpAddr) -> String {
    template.replace("%IP%", &ip.to_string())
}

/// How a command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(i32),
    Killed(i32),
    TimedOut,
    NotStarted(String),
}

/// Runs a command through the shell, logs it as knockd does, and reports how it ended.
pub async fn run(
    journal: Arc<Journal>,
    door: String,
    command: String,
    deadline: Duration,
) -> Outcome {
    journal.line(&format!("{door}: running command: {command}"));
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            journal.line(&format!("{door}: command could not start: {error}"));
            return Outcome::NotStarted(error.to_string());
        }
    };
    let outcome = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt as _;
            match (status.code(), status.signal()) {
                (Some(0), _) => Outcome::Succeeded,
                (Some(code), _) => Outcome::Failed(code),
                (None, Some(signal)) => Outcome::Killed(signal),
                (None, None) => Outcome::Failed(-1),
            }
        }
        Ok(Err(error)) => Outcome::NotStarted(error.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Outcome::TimedOut
        }
    };
    match &outcome {
        Outcome::Succeeded => {}
        Outcome::Failed(code) => journal.line(&format!(
            "{door}: command returned non-zero status code ({code})"
        )),
        Outcome::Killed(signal) => {
            journal.line(&format!("{door}: command was killed by signal {signal}"))
        }
        Outcome::TimedOut => journal.line(&format!(
            "{door}: command still running after {} s; killed it",
            deadline.as_secs()
        )),
        Outcome::NotStarted(error) => journal.line(&format!("{door}: command failed: {error}")),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ip_placeholder_is_replaced() {
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(
            expand("iptables -A KNOCKD -s %IP% -j ACCEPT # %IP%", ip),
            "iptables -A KNOCKD -s 198.51.100.2 -j ACCEPT # 198.51.100.2"
        );
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(expand("ip6tables -s %IP%", v6), "ip6tables -s 2001:db8::2");
    }

    fn run_now(command: &str, deadline: Duration) -> Outcome {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let journal = Arc::new(Journal::stderr_only(false));
        runtime.block_on(run(journal, "door".into(), command.into(), deadline))
    }

    #[test]
    fn a_successful_command_reports_success() {
        assert_eq!(run_now("true", COMMAND_DEADLINE), Outcome::Succeeded);
    }

    #[test]
    fn a_failing_command_reports_its_exit_status() {
        assert_eq!(run_now("exit 3", COMMAND_DEADLINE), Outcome::Failed(3));
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_deadline() {
        assert_eq!(
            run_now("sleep 5", Duration::from_millis(100)),
            Outcome::TimedOut
        );
    }
}
