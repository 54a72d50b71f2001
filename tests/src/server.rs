//! `warden run` serving HTTP in the background, for tests that talk to it
//! over a real socket.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the host may take to load its plugins and listen (debug builds
/// compile plugins slowly).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the host may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `warden run` that listens on HTTP.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it.
    stderr_reader: Option<JoinHandle<()>>,
}

/// How a server ended.
#[derive(Debug)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it logged.
    pub stderr: String,
}

impl Server {
    /// Starts `bin` (see [`warden_bin!`](crate::warden_bin)) with `args`,
    /// which must make it listen on HTTP (`--listen 127.0.0.1:0`, or the
    /// same from the config or the environment), and `envs`; waits until
    /// it logs the address it listens on.
    pub fn start<I, S>(bin: &Path, args: I, envs: &[(&str, &str)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(bin)
            .args(args)
            .env("WARDEN_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warden");

        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let log = stderr.clone();
        let mut stderr_reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split("HTTP listening on http://")
                    .nth(1)
                    .or_else(|| line.split("HTTP listening on https://").nth(1))
                    .and_then(|rest| rest.split(['"', ' ']).next())
                    .and_then(|addr| addr.parse::<SocketAddr>().ok())
                {
                    let _ = addr_tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }));
        let (out_tx, stdout) = mpsc::channel();
        let pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });

        let started = Instant::now();
        let addr = loop {
            match addr_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => break addr,
                Err(_) if started.elapsed() > START_TIMEOUT => {
                    let _ = child.kill();
                    panic!(
                        "warden did not listen within {START_TIMEOUT:?}:\n{}",
                        stderr.lock().unwrap()
                    );
                }
                Err(_) => {
                    if let Some(status) = child.try_wait().expect("wait for warden") {
                        if let Some(reader) = stderr_reader.take() {
                            let _ = reader.join();
                        }
                        panic!(
                            "warden exited ({status}) before listening:\n{}",
                            stderr.lock().unwrap()
                        );
                    }
                }
            }
        };
        let stdin = child.stdin.take();
        Self {
            child,
            addr,
            stdin,
            stdout,
            stderr,
            stderr_reader,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Writes `text` to its standard input.
    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin.write_all(text.as_bytes()).expect("write to warden");
        stdin.flush().expect("flush warden's stdin");
    }

    /// Closes its standard input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line of its standard output, waiting up to `timeout`.
    pub fn stdout_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    /// What it has logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first line it logs that `matches`, waiting up to `timeout` for
    /// it: a line written before a reply may still be in the pipe when the
    /// reply arrives. Panics with the log if none comes.
    pub fn log_line(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let log = self.stderr();
            if let Some(line) = log.lines().find(|l| matches(l)) {
                return line.to_owned();
            }
            assert!(
                started.elapsed() < timeout,
                "no such line logged within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for warden").is_none()
    }

    /// Sends SIGTERM and waits for it to exit.
    pub fn terminate(mut self) -> Stopped {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for warden") {
                break status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                panic!(
                    "warden did not stop within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        Stopped {
            status,
            stderr: self.stderr(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
