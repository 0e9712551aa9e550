//! Server processes, a recording relay, raw requests and repository fixtures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use packvault::format::keyslot::Argon2Params;
use packvault::{ClientState, Credentials, FileMeta, InitOptions, LocalStore, OpenOptions, Repository, Store};
use packvault_vault::{KsfParams, RemoteVault, VaultKey};

/// Cheap Argon2id for OPAQUE's key stretching in tests.
pub const TEST_KSF: KsfParams = KsfParams { m_kib: 1024, t: 1, p: 1 };
/// Cheap Argon2id for PIN and passphrase slots in tests (the format's minimum).
pub const TEST_KDF: Argon2Params = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };
pub const PIN: &str = "271828";
pub const PASSPHRASE: &str = "correct horse battery staple vault";

/// A running `packvault-vault serve`.
pub struct Server {
    child: Child,
    pub url: String,
    pub addr: SocketAddr,
    pub key: VaultKey,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server on an ephemeral port of 127.0.0.1 and waits until it listens.
    pub fn start(db: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_packvault-vault"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start packvault-vault");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut key, mut url) = (None, None);
        while url.is_none() {
            let line = lines.next().expect("the server exits before listening").unwrap();
            if let Some(k) = line.strip_prefix("packvault-vault: vault key ") {
                key = Some(k.parse::<VaultKey>().unwrap());
            }
            if let Some(u) = line.strip_prefix("packvault-vault: listening on ") {
                url = Some(u.to_string());
            }
        }
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let url = url.unwrap();
        let addr = url.trim_start_matches("http://").parse().unwrap();
        Server { child, url, addr, key: key.expect("the key is printed before the address"), output }
    }

    /// A client of this server, pinned to its key.
    pub fn vault(&self) -> RemoteVault {
        RemoteVault::new(&self.url, self.key).unwrap().with_ksf(TEST_KSF).unwrap()
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let ok = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes one connection's client sent.
pub type Recorded = Arc<Mutex<Vec<u8>>>;

/// A TCP relay to a server that records every byte clients send, per connection.
pub struct Proxy {
    pub url: String,
    pub streams: Arc<Mutex<Vec<Recorded>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let streams: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let all = streams.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let record: Recorded = Arc::default();
                all.lock().unwrap().push(record.clone());
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Proxy { url, streams }
    }

    /// Everything clients sent so far, concatenated.
    pub fn sent(&self) -> Vec<u8> {
        self.streams.lock().unwrap().iter().flat_map(|s| s.lock().unwrap().clone()).collect()
    }

    /// The HTTP requests clients sent so far: `(path, body)`.
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for s in self.streams.lock().unwrap().iter() {
            let bytes = s.lock().unwrap().clone();
            let mut rest = &bytes[..];
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&rest[..end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let body_start = end + 4;
                if rest.len() < body_start + len {
                    break;
                }
                out.push((path, rest[body_start..body_start + len].to_vec()));
                rest = &rest[body_start + len..];
            }
        }
        out
    }
}

/// One raw HTTP POST; returns the status and the body.
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: vault\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[..end]).split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response[end + 4..].to_vec())
}

/// A repository with one snapshot (`chats/alice.json`), made on "device 1" with a passphrase.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
}

pub const CHAT: &[u8] = b"[{\"from\":\"alice\",\"text\":\"restore me with a PIN\"}]";

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::create(dir.path().join("repo")).unwrap());
        let options = InitOptions {
            kdf: TEST_KDF,
            state: ClientState::Dir(dir.path().join("device1-state")),
            ..InitOptions::default()
        };
        let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASSPHRASE), options).unwrap();
        let mut backup = repo.backup().unwrap();
        let meta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };
        backup.add_stream("chats/alice.json", CHAT, meta).unwrap();
        backup.commit(packvault::SnapshotInfo::default()).unwrap();
        Fixture { dir, store }
    }

    /// Opens on device 1 with the passphrase.
    pub fn open_device1(&self) -> Repository {
        let options =
            OpenOptions { state: ClientState::Dir(self.dir.path().join("device1-state")), ..OpenOptions::default() };
        Repository::open(self.store.clone(), &Credentials::passphrase(PASSPHRASE), &options).unwrap()
    }

    /// Device 1 adds a PIN slot enrolled in `vault`.
    pub fn add_pin(&self, vault: &dyn packvault::PinVault, pin: &str) -> packvault::SlotId {
        let repo = self.open_device1();
        repo.keys().add_pin(&packvault::Passphrase::new(pin), vault, TEST_KDF, "pin").unwrap()
    }

    /// A new device (no state, no cache) opens with a PIN.
    pub fn open_new_device(&self, vault: Arc<dyn packvault::PinVault>, pin: &str) -> packvault::Result<Repository> {
        let state = tempfile::tempdir().unwrap().keep();
        let options = OpenOptions { state: ClientState::Dir(state), ..OpenOptions::default() };
        Repository::open(self.store.clone(), &Credentials::pin(pin, vault), &options)
    }
}

/// Finds `needle` in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
