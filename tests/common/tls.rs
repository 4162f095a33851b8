//! Test certificates made with the `openssl` command: a CA and a
//! certificate it signs for 127.0.0.1 (server and client use, so peers can
//! show it to each other), in a directory removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TestCertificates {
    directory: PathBuf,
}

fn openssl(directory: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(directory).args(args).output().expect("running openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl TestCertificates {
    /// A new CA and a certificate it signed for 127.0.0.1 and localhost.
    pub fn create() -> TestCertificates {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "chaintable-tls-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&directory).expect("certificate directory");
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(key);
        ca.extend([
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=chaintable test CA",
        ]);
        openssl(&directory, &ca);
        let mut request = vec!["req"];
        request.extend(key);
        request.extend(["-keyout", "key.pem", "-out", "request.csr", "-subj", "/CN=chaintable test server"]);
        openssl(&directory, &request);
        fs::write(
            directory.join("extensions.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("extensions");
        openssl(
            &directory,
            &[
                "x509",
                "-req",
                "-in",
                "request.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-extfile",
                "extensions.cnf",
            ],
        );
        TestCertificates { directory }
    }

    pub fn ca(&self) -> String {
        self.directory.join("ca.pem").display().to_string()
    }

    /// `--tls-cert`, `--tls-key` and `--tls-ca` for a server.
    pub fn server_args(&self) -> Vec<String> {
        let path = |name: &str| self.directory.join(name).display().to_string();
        vec![
            "--tls-cert".into(),
            path("cert.pem"),
            "--tls-key".into(),
            path("key.pem"),
            "--tls-ca".into(),
            path("ca.pem"),
        ]
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.directory);
    }
}
