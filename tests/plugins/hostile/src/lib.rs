//! A plugin that attacks its host on command. Each route tries one thing a
//! sandboxed plugin must not be able to do, or fails in one way the host
//! must contain, and replies with what happened when it survives.

use std::hash::BuildHasher;

use warden_sdk::Message;

/// The hostile plugin.
#[derive(Default)]
pub struct Hostile;

#[warden_sdk::plugin(id = "warden.tests.Hostile", description = "Misbehaves on command")]
impl Hostile {
    /// Spins forever; only the host's time limit ends it.
    #[respond_to(r"^spin$")]
    fn spin(&self, _msg: &Message) {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    /// Allocates until memory runs out.
    #[respond_to(r"^grow$")]
    fn grow(&self, msg: &Message) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            if hoard.len() == usize::MAX {
                msg.say("unreachable");
            }
        }
    }

    /// Recurses without end on WebAssembly's own call stack: a stack
    /// overflow.
    #[respond_to(r"^recurse$")]
    fn recurse(&self, msg: &Message) {
        msg.say(format!("depth {}", depth(std::hint::black_box(0))));
    }

    /// Recurses with large frames, which Rust keeps in linear memory, until
    /// that stack runs below address zero.
    #[respond_to(r"^smash$")]
    fn smash(&self, msg: &Message) {
        msg.say(format!("depth {}", big_frames(std::hint::black_box(0))));
    }

    /// Tries to read a file.
    #[respond_to(r"^open (?P<path>.+)$")]
    fn open(&self, msg: &Message, path: &str) {
        match std::fs::read(path) {
            Ok(bytes) => msg.say(format!("read {} bytes", bytes.len())),
            Err(e) => msg.say(format!("denied: {e}")),
        }
    }

    /// Lists the directory entries it can see at `/`.
    #[respond_to(r"^ls$")]
    fn ls(&self, msg: &Message) {
        match std::fs::read_dir("/") {
            Ok(entries) => msg.say(format!("{} entries", entries.count())),
            Err(e) => msg.say(format!("denied: {e}")),
        }
    }

    /// Reads the environment and the arguments.
    #[respond_to(r"^env$")]
    fn env(&self, msg: &Message) {
        msg.say(format!(
            "{} vars, {} args",
            std::env::vars_os().count(),
            std::env::args_os().count()
        ));
    }

    /// Tries to open a TCP connection.
    #[respond_to(r"^connect (?P<addr>.+)$")]
    fn connect(&self, msg: &Message, addr: &str) {
        match std::net::TcpStream::connect(addr) {
            Ok(_) => msg.say("connected"),
            Err(e) => msg.say(format!("denied: {e}")),
        }
    }

    /// Tries to listen on a TCP port.
    #[respond_to(r"^listen$")]
    fn listen(&self, msg: &Message) {
        match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(_) => msg.say("listening"),
            Err(e) => msg.say(format!("denied: {e}")),
        }
    }

    /// Reads the clock and random numbers, which plugins may use.
    #[respond_to(r"^clock$")]
    fn clock(&self, msg: &Message) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let a = std::collections::hash_map::RandomState::new().hash_one(1u8);
        let b = std::collections::hash_map::RandomState::new().hash_one(1u8);
        let started = std::time::Instant::now();
        msg.say(format!(
            "clock ok: {}, random ok: {}, monotonic ok: {}",
            now.is_ok_and(|d| d.as_secs() > 1_600_000_000),
            a != b,
            started.elapsed().as_secs() < 5
        ));
    }

    /// Works for `ms` milliseconds, then answers: a slow but honest call.
    #[respond_to(r"^busy (?P<ms>\d+)$")]
    fn busy(&self, msg: &Message, ms: &str) {
        let ms: u64 = ms.parse().unwrap_or(0);
        let started = std::time::Instant::now();
        while started.elapsed().as_millis() < u128::from(ms) {
            std::hint::spin_loop();
        }
        msg.say(format!("done after {ms} ms"));
    }

    /// Works for `ms` milliseconds, then says how many of these calls its
    /// instance has served: each instance counts for itself.
    #[respond_to(r"^counted (?P<ms>\d+)$")]
    fn counted(&self, msg: &Message, ms: &str) {
        static SERVED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.busy(msg, ms);
        msg.say(format!("call {n} of this instance"));
    }

    /// Answers, to show the plugin still works after a fault.
    #[respond_to(r"^ping$")]
    fn ping(&self, msg: &Message) {
        msg.say("pong");
    }
}

#[allow(unconditional_recursion)]
fn depth(n: u64) -> u64 {
    std::hint::black_box(depth(std::hint::black_box(n + 1))) + 1
}

#[allow(unconditional_recursion)]
fn big_frames(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    big_frames(frame[63] + 1) + frame[0]
}
