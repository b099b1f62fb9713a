//! The binary over HTTPS, driven by an independent client (`curl -sk -u`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

struct SimProc {
    child: Child,
    port: u16,
    ctl: PathBuf,
    dir: PathBuf,
    fingerprint: String,
}

impl Drop for SimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> SimProc {
    let dir = std::env::temp_dir().join(format!("ros-sim-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctl = dir.join("ctl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ros-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--cert-dir"])
        .arg(dir.join("cert"))
        .args(["--user", "warren:s3cret", "--user", "admin:x", "--control"])
        .arg(&ctl)
        .args(["--interfaces", "eth0,br-lan", "--defconf"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fingerprint = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready line")
        .to_string();
    SimProc {
        child,
        port,
        ctl,
        dir,
        fingerprint,
    }
}

impl SimProc {
    /// (status, body) of one curl request.
    fn curl(&self, user: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Option<Value>) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-u", user, "-X", method, "-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        cmd.arg(format!("https://127.0.0.1:{}/rest/{path}", self.port));
        let out = cmd.output().expect("curl runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        let json =
            (!body.is_empty()).then(|| serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}")));
        (code.parse().unwrap(), json)
    }
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (s, b) = self.curl("warren:s3cret", method, path, body);
        assert_eq!(s, 200, "{method} {path}: {b:?}");
        b.unwrap()
    }
    fn control(&self, line: &str) -> Value {
        let mut s = UnixStream::connect(&self.ctl).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    }
}

fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[".id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rest_over_https_with_curl() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl not present");
        return;
    }
    let sim = start();
    // The fingerprint file is the SHA-256 of the certificate DER.
    let der = std::fs::read(sim.dir.join("cert/cert.der")).unwrap();
    assert_eq!(warren_ros_sim::server::fingerprint(&der), sim.fingerprint);
    assert_eq!(
        std::fs::read_to_string(sim.dir.join("cert/fingerprint"))
            .unwrap()
            .trim(),
        sim.fingerprint
    );

    // 401.
    let (s, b) = sim.curl("warren:wrong", "GET", "system/identity", None);
    assert_eq!((s, b), (401, Some(json!({"error":401,"message":"Unauthorized"}))));
    // Singletons are bare objects.
    assert_eq!(sim.ok("GET", "system/resource", None)["version"], "7.24 (stable)");

    // PUT returns the created object, every value a string.
    let t = sim.ok(
        "PUT",
        "routing/table",
        Some(&json!({"name":"warren-100","fib":"","comment":"warren:table/100"})),
    );
    assert_eq!(t["fib"], "");
    let wg = sim.ok(
        "PUT",
        "interface/wireguard",
        Some(&json!({"name":"wg0","listen-port":51820,"comment":"warren:if/wg0"})),
    );
    assert_eq!(wg["listen-port"], "51820");
    assert_eq!(wg["public-key"].as_str().unwrap().len(), 44);
    let addr = sim.ok(
        "PUT",
        "ip/address",
        Some(&json!({"address":"10.100.0.2/30","interface":"wg0"})),
    );
    assert_eq!(addr["network"], "10.100.0.0");
    assert!(addr.as_object().unwrap().values().all(Value::is_string));

    // GET by id, by name, filters and .proplist.
    let id = addr[".id"].as_str().unwrap();
    assert_eq!(sim.ok("GET", &format!("ip/address/{id}"), None), addr);
    assert_eq!(sim.ok("GET", "interface/wireguard/wg0", None)[".id"], wg[".id"]);
    let (s, b) = sim.curl("warren:s3cret", "GET", "ip/address/*77", None);
    assert_eq!((s, b), (404, Some(json!({"error":404,"message":"Not Found"}))));
    let filtered = sim.ok("GET", "ip/firewall/filter?chain=input&.proplist=action", None);
    assert_eq!(filtered.as_array().unwrap().len(), 5);
    for r in filtered.as_array().unwrap() {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, [".id", "action"]);
    }

    // Jump at the top of forward: after the dynamic dummy rule, before fasttrack.
    let filter = sim.ok("GET", "ip/firewall/filter", None);
    let rows = filter.as_array().unwrap();
    assert_eq!(rows[0]["dynamic"], "true");
    let first_fwd = rows
        .iter()
        .find(|r| r["chain"] == "forward" && r["dynamic"] == "false")
        .unwrap()[".id"]
        .clone();
    let jump = sim.ok(
        "PUT",
        "ip/firewall/filter",
        Some(&json!({"chain":"forward","action":"jump","jump-target":"warren-forward","place-before":first_fwd,"comment":"warren:jump/filter-forward"})),
    );
    let jid = jump[".id"].as_str().unwrap().to_string();
    let order = ids(&sim.ok("GET", "ip/firewall/filter", None));
    let at = order.iter().position(|i| *i == jid).unwrap();
    assert_eq!(order[at + 1], first_fwd.as_str().unwrap());
    assert!(
        jump.get("disabled").is_none(),
        "firewall disabled absent until written"
    );

    // PATCH returns the object; place-before and unknown parameters are refused.
    let patched = sim.ok(
        "PATCH",
        &format!("ip/firewall/filter/{jid}"),
        Some(&json!({"disabled":"no"})),
    );
    assert_eq!(patched["disabled"], "false");
    let (s, b) = sim.curl(
        "warren:s3cret",
        "PATCH",
        &format!("ip/firewall/filter/{jid}"),
        Some(&json!({"place-before":"*2"})),
    );
    assert_eq!(
        (s, b),
        (
            400,
            Some(json!({"error":400,"message":"Bad Request","detail":"unknown parameter place-before"}))
        )
    );
    let (s, b) = sim.curl(
        "warren:s3cret",
        "PUT",
        "ip/address",
        Some(&json!({"address":"1.2.3.4","interface":"eth0","colour":"red"})),
    );
    assert_eq!(
        (s, b),
        (
            400,
            Some(json!({"error":400,"message":"Bad Request","detail":"unknown parameter colour"}))
        )
    );
    let (s, b) = sim.curl("warren:s3cret", "GET", "ip/nonexistent", None);
    assert_eq!(s, 400);
    assert_eq!(b.unwrap()["detail"], "no such command or directory (nonexistent)");

    // move: to the end with an unknown destination, then back.
    assert_eq!(
        sim.ok(
            "POST",
            "ip/firewall/filter/move",
            Some(&json!({"numbers":jid,"destination":"*FFFF"}))
        ),
        json!([])
    );
    assert_eq!(
        ids(&sim.ok("GET", "ip/firewall/filter", None)).last().unwrap(),
        &jid
    );
    sim.ok(
        "POST",
        "ip/firewall/filter/move",
        Some(&json!({"numbers":jid,"destination":first_fwd})),
    );
    assert_eq!(ids(&sim.ok("GET", "ip/firewall/filter", None)), order);
    let (s, b) = sim.curl(
        "warren:s3cret",
        "POST",
        "ip/firewall/filter/move",
        Some(&json!({})),
    );
    assert_eq!((s, b.unwrap()["detail"].clone()), (400, json!("missing =.id=")));
    let (s, _) = sim.curl(
        "warren:s3cret",
        "POST",
        "ip/firewall/filter/move",
        Some(&json!({"numbers":"*999"})),
    );
    assert_eq!(s, 404);

    // POST print with .proplist and .query.
    let printed = sim.ok(
        "POST",
        "ip/firewall/filter/print",
        Some(&json!({".proplist":["chain"],".query":["chain=forward","action=jump","#&"]})),
    );
    assert_eq!(printed, json!([{".id": jid, "chain": "forward"}]));

    // DELETE: empty body, then 404.
    let (s, b) = sim.curl(
        "warren:s3cret",
        "DELETE",
        &format!("ip/firewall/filter/{jid}"),
        None,
    );
    assert_eq!((s, b), (204, None));
    let (s, _) = sim.curl(
        "warren:s3cret",
        "DELETE",
        &format!("ip/firewall/filter/{jid}"),
        None,
    );
    assert_eq!(s, 404);

    // Ping without --kernel: everything arrives.
    let ping = sim.ok("POST", "ping", Some(&json!({"address":"10.100.0.1","count":"3"})));
    assert_eq!(ping.as_array().unwrap().last().unwrap()["received"], "3");

    // Control socket: writes, fail-next, script run, clock, dump, log.
    let writes = sim.control("writes")["writes"].as_u64().unwrap();
    assert_eq!(writes, 8, "PUT×4, PATCH, move×2, DELETE");
    assert_eq!(sim.control("fail-next 400 failure: injected"), json!({"ok":true}));
    let (s, b) = sim.curl(
        "warren:s3cret",
        "PUT",
        "ip/firewall/nat",
        Some(&json!({"chain":"dstnat"})),
    );
    assert_eq!(
        (s, b.unwrap()["detail"].clone()),
        (400, json!("failure: injected"))
    );
    assert!(sim
        .ok("GET", "ip/firewall/nat?chain=dstnat", None)
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(sim.control("writes")["writes"].as_u64(), Some(writes));

    sim.ok("PUT", "system/script", Some(&json!({"name":"warren-rollback","source":"/routing table remove [find where comment~\"^warren:\"]\n:log warning \"rolled back\""})));
    sim.ok("PUT", "system/scheduler", Some(&json!({"name":"warren-rollback","interval":"5m","on-event":"/system script run warren-rollback"})));
    assert_eq!(sim.control("advance 299"), json!({"now":299,"ran":[]}));
    assert_eq!(
        sim.control("advance 1"),
        json!({"now":300,"ran":["warren-rollback"]})
    );
    assert!(sim
        .ok("GET", "routing/table?name=warren-100", None)
        .as_array()
        .unwrap()
        .is_empty());
    assert!(sim.control("log")["log"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().ends_with("rolled back")));
    let dump = sim.control("dump");
    assert_eq!(
        dump["menus"]["routing/table"].as_array().unwrap().len(),
        1,
        "only main is left"
    );
    sim.ok(
        "POST",
        "system/script/run",
        Some(&json!({"number":"warren-rollback"})),
    );
    assert_eq!(
        sim.ok("GET", "system/script/warren-rollback", None)["run-count"],
        "2"
    );
}
