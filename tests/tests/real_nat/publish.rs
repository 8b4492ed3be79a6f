//! Issue 17: services published on the server, reached through a real NAT by machines that
//! run no burrow. A daemon behind a symmetric NAT exposes a web server (`python3 -m
//! http.server`) on the server's public port 20000 and two HTTPS servers (python's `ssl`,
//! each with a certificate of its own made here by `openssl`) on the server's SNI port 443 as
//! `blog.lab.test` and `shop.lab.test`. From a host behind another NAT, `curl` gets the page at
//! the public port, and each HTTPS name answers with its own certificate (verified against that
//! certificate alone; the other one's is refused). With `--publish-limit 3` the token is then
//! at its limit, and a second daemon asking for one more port gets a clear refusal in its status
//! and its log.

use std::path::Path;
use std::time::{Duration, Instant};

use burrow_tests::netns::{self, Lab, Proc, Site, Topology};

use super::{SERVER, assert_clean, burrow_bin, lab};

const SRV: &str = "192.0.2.10:7000";

/// A small HTTP(S) server answering every GET with `body` (HTTPS when given a certificate).
const HTTPS_PY: &str = r#"
import http.server, ssl, sys
port, body = int(sys.argv[1]), sys.argv[2].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

/// A self-signed certificate for `name` (its key and certificate files in `dir`).
fn certificate(dir: &Path, name: &str) -> (String, String) {
    let key = dir
        .join(format!("{name}.key"))
        .to_string_lossy()
        .into_owned();
    let cert = dir
        .join(format!("{name}.pem"))
        .to_string_lossy()
        .into_owned();
    let subj = format!("/CN={name}");
    let san = format!("subjectAltName=DNS:{name}");
    netns::run_quiet(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            &san,
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    )
    .expect("openssl makes a certificate");
    (key, cert)
}

/// `burrow status` (text) of the daemon with `state` until it contains `needle`.
fn status_until(burrow: &str, state: &Path, needle: &str) -> Result<String, String> {
    let end = Instant::now() + Duration::from_secs(15);
    let dir = state.to_string_lossy().into_owned();
    loop {
        let out = netns::run_quiet(burrow, &["status", "--state-dir", &dir]);
        if let Ok(s) = &out {
            if s.contains(needle) {
                return Ok(s.clone());
            }
        }
        if Instant::now() >= end {
            return Err(format!("status of {dir} never showed {needle:?}: {out:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `curl args` on `host` until it succeeds (the first connection may race the
/// publication), at most 10 s; its output or the last error.
fn curl(lab: &Lab, host: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["-sS", "--max-time", "5"];
    full.extend_from_slice(args);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match lab.exec(host, "curl", &full) {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() >= end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn spawn_ready(lab: &Lab, host: &str, name: &str, prog: &str, args: &[&str]) -> Proc {
    let mut p = lab
        .spawn(host, name, Path::new(prog), args)
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    p.wait_line(Duration::from_secs(10), |l| {
        l.contains("ready") || l.starts_with("Serving HTTP")
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    p
}

#[test]
fn published_web_and_sni_services_answer_curl_through_a_real_nat() {
    let Some(mut lab) = lab() else { return };
    for tool in ["curl", "openssl", "python3"] {
        if netns::run_quiet("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            panic!("BURROW_REAL_NAT=1 but {tool} is missing (.ci/run installs it)");
        }
    }
    let topo = Topology::build(&mut lab, &[Site::SYMMETRIC, Site::CONE]).expect("topology");
    let (behind, outside) = (topo.hosts[0][0].clone(), topo.hosts[1][0].clone());
    let burrow = burrow_bin();
    let b = burrow.to_string_lossy().into_owned();
    let dir = lab.dir.clone();
    let key = dir.join("server.key").to_string_lossy().into_owned();
    netns::run_quiet(&b, &["keygen", "--out", &key]).expect("keygen");
    let server_key = netns::run_quiet(&b, &["pubkey", "--key", &key])
        .expect("pubkey")
        .trim()
        .to_string();
    let mut server = lab
        .spawn(
            SERVER,
            "server",
            &burrow,
            &[
                "server",
                "--listen",
                SRV,
                "--key",
                &key,
                "--token",
                "netns",
                "--publish-ports",
                "20000-20001",
                "--publish-limit",
                "3",
                "--publish-sni",
                "443",
                "--sni-domain",
                "lab.test",
            ],
        )
        .expect("spawn server");
    server
        .wait_line(Duration::from_secs(10), |l| l.contains("listening"))
        .expect("server up");

    // The services behind the NAT, on the daemon's loopback only.
    let site = dir.join("site");
    std::fs::create_dir_all(&site).expect("site dir");
    std::fs::write(site.join("index.html"), "hello from behind the NAT\n").expect("page");
    let site_s = site.to_string_lossy().into_owned();
    let web = spawn_ready(
        &lab,
        &behind,
        "http-server",
        "python3",
        &[
            "-u",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "--directory",
            &site_s,
        ],
    );
    let script = dir.join("https.py");
    std::fs::write(&script, HTTPS_PY).expect("script");
    let script = script.to_string_lossy().into_owned();
    let mut certs = Vec::new();
    let mut https = Vec::new();
    for (name, port) in [("blog", "8443"), ("shop", "9443")] {
        let host = format!("{name}.lab.test");
        let (k, c) = certificate(&dir, &host);
        https.push(spawn_ready(
            &lab,
            &behind,
            &format!("https-{name}"),
            "python3",
            &[&script, port, &format!("this is {name}\n"), &c, &k],
        ));
        certs.push((host, c));
    }

    let state_a = dir.join("state-a");
    let config = dir.join("a.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{SRV}\"\nserver_key = \"{server_key}\"\ntoken = \"netns\"\n\
             state_dir = \"{}\"\n\
             [[expose]]\nname = \"/lab/web\"\ntarget = \"127.0.0.1:8080\"\npublish = 20000\n\
             [[expose]]\nname = \"/lab/blog\"\ntarget = \"127.0.0.1:8443\"\npublish = \"sni\"\n\
             [[expose]]\nname = \"/lab/shop\"\ntarget = \"127.0.0.1:9443\"\npublish = \"sni\"\n",
            state_a.display()
        ),
    )
    .expect("config");
    netns::run_quiet("chmod", &["600", &config.to_string_lossy()]).expect("chmod");
    let daemon = lab
        .spawn(
            &behind,
            "daemon-a",
            &burrow,
            &["daemon", "-c", &config.to_string_lossy()],
        )
        .expect("spawn daemon");
    let started = Instant::now();
    status_until(&b, &state_a, "published on 192.0.2.10:20000").expect("web published");
    let mut status = String::new();
    while status.matches("published on 192.0.2.10:443").count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(15), "{status}");
        std::thread::sleep(Duration::from_millis(100));
        status = status_until(&b, &state_a, "PUBLISHED").expect("status");
    }
    for path in ["/lab/blog", "/lab/shop"] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(path) && l.ends_with("published on 192.0.2.10:443")),
            "{status}"
        );
    }
    println!("published in {:.1?}:\n{status}", started.elapsed());

    // A machine behind another NAT, with no burrow, reaches each of them.
    let page = curl(&lab, &outside, &["http://192.0.2.10:20000/"]).expect("curl the web page");
    assert_eq!(page, "hello from behind the NAT\n");
    for (i, (host, cert)) in certs.iter().enumerate() {
        let resolve = format!("{host}:443:192.0.2.10");
        let url = format!("https://{host}/");
        let body = curl(
            &lab,
            &outside,
            &["--resolve", &resolve, "--cacert", cert, &url],
        )
        .unwrap_or_else(|e| panic!("curl {url}: {e}"));
        assert_eq!(body, format!("this is {}\n", &host[..4]), "{url}");
        // Its certificate is its own: the other service's certificate does not verify it.
        let other = &certs[1 - i].1;
        let err = lab
            .exec(
                &outside,
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "5",
                    "--resolve",
                    &resolve,
                    "--cacert",
                    other,
                    &url,
                ],
            )
            .expect_err("the other certificate must not verify this name");
        assert!(err.contains("(60)") || err.contains("certificate"), "{err}");
        println!("curl {url}: {body:?}, verified by its own certificate only");
    }
    println!("curl http://192.0.2.10:20000/: {page:?}");
    let log = server.stderr();
    for needle in [
        "published /lab/web of daemon",
        "as blog.lab.test on the SNI port 443",
        "as shop.lab.test on the SNI port 443",
    ] {
        assert!(log.contains(needle), "server log lacks {needle:?}:\n{log}");
    }

    // The token holds three publications, its limit: one more is refused, clearly.
    let state_c = dir.join("state-c");
    let state_c_s = state_c.to_string_lossy().into_owned();
    let extra = lab
        .spawn(
            &outside,
            "daemon-c",
            &burrow,
            &[
                "expose",
                "/lab/extra",
                "127.0.0.1:8080",
                "--publish",
                "any",
                "--server",
                SRV,
                "--server-key",
                &server_key,
                "--token",
                "netns",
                "--state-dir",
                &state_c_s,
            ],
        )
        .expect("spawn daemon-c");
    let refused = "publish refused: token at its limit of 3 published ports";
    let status = status_until(&b, &state_c, refused).expect("refusal in status");
    println!("{status}");
    let err_log = extra.stderr();
    assert!(
        err_log.contains(&format!("/lab/extra: {refused}")),
        "daemon-c's log lacks the refusal:\n{err_log}"
    );
    drop((extra, daemon, web, https));
    drop(server);
    assert_clean(lab);
}
