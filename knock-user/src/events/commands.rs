//! Start and stop commands: `%IP%` expansion, and running them through `/bin/sh -c` (with the
//! one process runner, `system::process`) without ever blocking the daemon.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::journal::Journal;
use crate::system::process::{Failure, Run};

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

/// Runs a command through the shell, logs it as knockd does, and reports how it ended. The
/// command runs on a blocking thread, so the daemon's event loop goes on meanwhile.
pub async fn run(
    journal: Arc<Journal>,
    door: String,
    command: String,
    deadline: Duration,
) -> Outcome {
    journal.line(&format!("{door}: running command: {command}"));
    let run = Run::shell(&command);
    let outcome = match tokio::task::spawn_blocking(move || run.status(deadline)).await {
        Ok(Ok(())) => Outcome::Succeeded,
        Ok(Err(Failure::Exited { code, .. })) => Outcome::Failed(code),
        Ok(Err(Failure::Killed { signal, .. })) => Outcome::Killed(signal),
        Ok(Err(Failure::TimedOut(_))) => Outcome::TimedOut,
        Ok(Err(Failure::NotStarted(error))) => Outcome::NotStarted(error.to_string()),
        Err(error) => Outcome::NotStarted(error.to_string()),
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
        Outcome::NotStarted(error) => {
            journal.line(&format!("{door}: command could not start: {error}"))
        }
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
