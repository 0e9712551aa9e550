//! Failures over S3: wrong credentials and a missing bucket give clear errors that hold no
//! secret; a server killed mid-backup gives a retryable error within a bounded time, and after
//! a restart `check` passes and the backup, run again, completes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use packvault::{
    CheckOptions, Credentials, ErrorKind, FileMeta, Repository, RestoreOptions, S3Credentials, S3Options, S3Store,
    SnapshotInfo,
};

use crate::{fast_init, open_options, scratch, server, PASS};

const SECRET: &str = "WrongSecretValue-4f1c9e8a7b6d5c4b3a29";

#[test]
fn wrong_credentials_give_a_clear_error_without_the_secret() {
    let Some(s) = server("wrong_credentials_give_a_clear_error_without_the_secret") else { return };
    let (_t, dir) = scratch();
    let real_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    for (what, creds) in [
        ("an unknown key", S3Credentials::new("GK0123456789abcdef01234567", SECRET)),
        ("a known key with a wrong secret", S3Credentials::new(real_id, SECRET)),
    ] {
        let options = S3Options { credentials: Some(creds), retries: 1, ..S3Options::default() };
        let store = Arc::new(S3Store::open(&s.url("wrong-creds"), options).unwrap());
        let e = Repository::init(store, &Credentials::passphrase(PASS), fast_init(&dir)).unwrap_err();
        let shown = format!("{e} | {e:?}");
        eprintln!("{what}: {e}");
        assert_eq!(e.kind(), ErrorKind::Io, "{what}: {shown}");
        assert!(!e.is_retryable(), "{what}: a retry cannot help: {shown}");
        assert!(e.to_string().contains("access key"), "{what}: names the cause: {e}");
        assert!(!shown.contains(SECRET), "{what}: the secret leaked: {shown}");
        assert!(!shown.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()), "{what}: {shown}");
    }
}

#[test]
fn a_missing_bucket_gives_a_clear_error() {
    let Some(s) = server("a_missing_bucket_gives_a_clear_error") else { return };
    let (_t, dir) = scratch();
    let url = format!("s3:{}/no-such-bucket-for-packvault/p", s.endpoint);
    let store = Arc::new(S3Store::open(&url, S3Options { retries: 1, ..S3Options::default() }).unwrap());
    let e = Repository::init(store.clone(), &Credentials::passphrase(PASS), fast_init(&dir)).unwrap_err();
    eprintln!("init in a missing bucket: {e}");
    assert!(e.to_string().contains("bucket does not exist") && !e.is_retryable(), "{e}");
    let e = Repository::open(store, &Credentials::passphrase(PASS), &open_options(&dir)).unwrap_err();
    eprintln!("open in a missing bucket: {e}");
    assert!(e.to_string().contains("bucket does not exist"), "{e}");
}

/// A Garage server of this test's own (the shared one must not die under other tests).
struct OwnGarage {
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnGarage {
    fn start(dir: &Path) -> OwnGarage {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/start-garage.sh");
        let out = Command::new("bash").arg(&script).arg(dir).stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success(), "start-garage.sh failed");
        let env = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        OwnGarage { env, dir: dir.to_path_buf(), child: None }
    }

    fn var(&self, name: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("garage.pid")).unwrap().trim().parse().unwrap()
    }

    fn kill(&self) {
        let status = Command::new("kill").args(["-KILL", &self.pid().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// The same node again, on its data.
    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().append(true).create(true).open(self.dir.join("garage.log")).unwrap();
        let child = Command::new(self.var("GARAGE_BIN"))
            .args(["-c", self.var("GARAGE_CONFIG"), "server"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(self.dir.join("garage.pid"), child.id().to_string()).unwrap();
        self.child = Some(child);
        let port = self.var("AWS_ENDPOINT_URL").rsplit(':').next().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            assert!(Instant::now() < deadline, "garage did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn options(&self) -> S3Options {
        S3Options {
            credentials: Some(S3Credentials::new(self.var("AWS_ACCESS_KEY_ID"), self.var("AWS_SECRET_ACCESS_KEY"))),
            region: Some(self.var("AWS_REGION").to_string()),
            // A short budget: the test measures how soon a dead server shows.
            retries: 2,
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_millis(400),
            timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            ..S3Options::default()
        }
    }

    fn url(&self, prefix: &str) -> String {
        format!("s3:{}/{}/{prefix}", self.var("AWS_ENDPOINT_URL"), self.var("S3_BUCKET"))
    }
}

impl Drop for OwnGarage {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.pid().to_string()]).status();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

fn du(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[test]
fn a_server_killed_mid_backup_gives_a_clear_error_and_a_retry_completes() {
    if server("a_server_killed_mid_backup_gives_a_clear_error_and_a_retry_completes").is_none() {
        return;
    }
    let (_t, dir) = scratch();
    let mut garage = OwnGarage::start(&dir.join("garage"));
    let store = Arc::new(S3Store::open(&garage.url("killed"), garage.options()).unwrap());
    let options = packvault::InitOptions { pack_target_size: 1 << 20, ..fast_init(&dir) };
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), options).unwrap();
    let meta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };
    let mut data = vec![0u8; 48 << 20];
    crate::history::Rng::new(5).fill(&mut data);

    let data_dir = dir.join("garage/data");
    let start = du(&data_dir);
    let killed_at: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|sc| {
        sc.spawn(|| {
            // Once some packs have landed.
            while !done.load(Ordering::SeqCst) {
                if du(&data_dir) > start + (6 << 20) {
                    garage.kill();
                    *killed_at.lock().unwrap() = Some(Instant::now());
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut b = repo.backup().unwrap();
        let r = b.add_stream("big.bin", &data[..], meta).and_then(|()| b.commit(SnapshotInfo::default()));
        done.store(true, Ordering::SeqCst);
        r
    });
    let killed_at = killed_at.lock().unwrap().expect("the server was killed during the backup");
    let Err(e) = result else { panic!("a backup whose server died fails") };
    let took = killed_at.elapsed();
    eprintln!("backup with the server killed: failed {took:?} after the kill: {e}");
    assert!(e.is_retryable(), "a dead server is transient: {e}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    drop(repo);

    garage.restart();
    let mut repo = Repository::open(store.clone(), &Credentials::passphrase(PASS), &open_options(&dir)).unwrap();
    let check = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    eprintln!("after the restart: {} packs no index names (left by the killed backup)", check.unreferenced_packs.len());
    let mut b = repo.backup().unwrap();
    b.add_stream("big.bin", &data[..], meta).unwrap();
    let outcome = b.commit(SnapshotInfo::default()).unwrap();
    let target = dir.join("restored");
    let report =
        repo.restore(&outcome.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    assert!(std::fs::read(target.join("big.bin")).unwrap() == data);
    let check = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}
