//! The Kubernetes manifests in deploy/kubernetes/ agree with each other and with
//! the wsgate.toml their ConfigMap carries, and that wsgate.toml is valid for the
//! real binary.
//!
//! A schema validator (deploy/kubernetes/check.sh, kubernetes-validate) checks each
//! manifest's shape; what no schema can say is checked here: the probes hit the
//! admin listener's port and paths, the grace period outlasts preStop + the
//! config's shutdown, the ConfigMap and the Secret are mounted (whole volumes, no
//! subPath) where the config and the container's arguments point, the public
//! Service has `externalTrafficPolicy: Local` and reaches the TLS listener's port,
//! and the headless Service's DNS name and port are the pool's backend address.
//!
//! `wsgate check` runs on a copy of the pod's file system under a temporary root:
//! every volume mount of the container is laid out there (the ConfigMap's keys as
//! files, the Secret's keys as a freshly generated certificate chain and key), and
//! the config's absolute paths under a mount point get the root as a prefix.
//! So `check` fails if the config names a file no mount provides.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
const FILES: [&str; 4] = [
    "configmap.yaml",
    "secret.yaml",
    "deployment.yaml",
    "service.yaml",
];

/// One parsed manifest and the file it came from.
struct Doc {
    file: &'static str,
    v: Value,
}

fn docs() -> Vec<Doc> {
    let mut out = Vec::new();
    for file in FILES {
        let text = std::fs::read_to_string(Path::new(DIR).join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let vs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!vs.is_empty(), "{file}: no YAML document");
        out.extend(vs.into_iter().map(|v| Doc { file, v }));
    }
    out
}

/// The manifest of `kind` named `name`.
fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    let hits: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.v["kind"] == kind && d.v["metadata"]["name"] == name)
        .collect();
    assert_eq!(hits.len(), 1, "exactly one {kind} {name:?} in {FILES:?}");
    hits[0]
}

fn all<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.v["kind"] == kind).collect()
}

impl Doc {
    /// The value at a JSON pointer, failing with the file and the pointer.
    fn at(&self, ptr: &str) -> &Value {
        self.v
            .pointer(ptr)
            .unwrap_or_else(|| panic!("{}: no {ptr}", self.file))
    }
    fn str(&self, ptr: &str) -> &str {
        self.at(ptr)
            .as_str()
            .unwrap_or_else(|| panic!("{}: {ptr} is not a string", self.file))
    }
    fn int(&self, ptr: &str) -> u64 {
        self.at(ptr)
            .as_u64()
            .unwrap_or_else(|| panic!("{}: {ptr} is not a whole number", self.file))
    }
}

/// Every manifest, and the config the ConfigMap carries.
struct Setup {
    docs: Vec<Doc>,
    /// The ConfigMap's `wsgate.toml`, as text and parsed.
    conf_text: String,
    conf: toml::Table,
}

impl Setup {
    fn load() -> Setup {
        let docs = docs();
        let cm = find(&docs, "ConfigMap", "wsgate-config");
        let conf_text = cm.str("/data/wsgate.toml").to_string();
        let conf: toml::Table = toml::from_str(&conf_text)
            .unwrap_or_else(|e| panic!("configmap.yaml: wsgate.toml: {e}"));
        Setup {
            docs,
            conf_text,
            conf,
        }
    }
    fn deployment(&self) -> &Doc {
        let ds = all(&self.docs, "Deployment");
        assert_eq!(ds.len(), 1, "one Deployment");
        ds[0]
    }
    fn container(&self) -> &Value {
        let d = self.deployment();
        let cs = d.at("/spec/template/spec/containers").as_array().unwrap();
        cs.iter()
            .find(|c| c["name"] == "wsgate")
            .expect("deployment.yaml: a container named wsgate")
    }
    /// The container port `port` (a number or a port name) refers to.
    fn container_port(&self, port: &Value) -> u64 {
        if let Some(n) = port.as_u64() {
            return n;
        }
        let name = port.as_str().expect("a port is a number or a name");
        self.container()["ports"]
            .as_array()
            .expect("deployment.yaml: container ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("deployment.yaml: no container port named {name:?}"))
            ["containerPort"]
            .as_u64()
            .unwrap()
    }
    /// The volume named `name` of the pod template.
    fn volume(&self, name: &str) -> &Value {
        self.deployment()
            .at("/spec/template/spec/volumes")
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("deployment.yaml: no volume {name:?}"))
    }
    /// The container's mount of the volume whose source (`configMap` or `secret`)
    /// names `object`: its mount path.
    fn mount_of(&self, source: &str, key: &str, object: &str) -> String {
        let mounts = self.container()["volumeMounts"]
            .as_array()
            .expect("deployment.yaml: volumeMounts");
        let m = mounts
            .iter()
            .find(|m| self.volume(m["name"].as_str().unwrap())[source][key] == object)
            .unwrap_or_else(|| panic!("deployment.yaml: no mount of {source} {object:?}"));
        assert!(
            m.get("subPath").is_none() && m.get("subPathExpr").is_none(),
            "deployment.yaml: {object:?} is mounted with subPath, which never updates"
        );
        assert_eq!(m["readOnly"], true, "{object:?} is mounted read-only");
        m["mountPath"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .into()
    }
    fn listener(&self) -> &toml::Table {
        let ls = self.conf["listener"].as_array().expect("[[listener]]");
        assert_eq!(ls.len(), 1, "one listener");
        ls[0].as_table().unwrap()
    }
    fn server(&self, key: &str) -> Duration {
        let v = self.conf["server"]
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("wsgate.toml: [server] {key} is set"));
        duration(v)
    }
    /// The `-c` argument of the container.
    fn config_arg(&self) -> String {
        let c = self.container();
        let args: Vec<&str> = c["command"]
            .as_array()
            .into_iter()
            .chain(c["args"].as_array())
            .flatten()
            .map(|a| a.as_str().unwrap())
            .collect();
        let i = args
            .iter()
            .position(|a| *a == "-c" || *a == "--config")
            .expect("deployment.yaml: wsgate is given its config with -c");
        args[i + 1].into()
    }
}

/// "250ms", "10s", "2m", "1h" (the forms conf/wsgate.toml uses).
fn duration(s: &str) -> Duration {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {s:?}"));
    match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("duration {s:?}: unknown unit"),
    }
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

#[test]
fn probes_hit_the_admin_listener() {
    let s = Setup::load();
    let admin = s.conf["admin"]["address"]
        .as_str()
        .expect("[admin] address");
    let (ip, _) = admin.rsplit_once(':').unwrap();
    assert!(
        ip == "0.0.0.0" || ip == "[::]",
        "the kubelet probes the pod's IP: [admin] address must listen on all interfaces, not {admin}"
    );
    let allow = s.conf["admin"]["allow"].as_array().expect("[admin] allow");
    assert!(!allow.is_empty(), "[admin] allow is listed");
    for c in allow {
        let c = c.as_str().unwrap();
        assert!(
            !c.ends_with("/0"),
            "[admin] allow must not be everyone: {c}"
        );
    }
    let c = s.container();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} path");
        assert_eq!(
            s.container_port(&get["port"]),
            port_of(admin),
            "{probe} goes to the admin port {admin}"
        );
        assert!(
            get.get("scheme").is_none_or(|v| v == "HTTP"),
            "the admin listener is plain HTTP"
        );
    }
}

#[test]
fn grace_period_outlasts_prestop_and_shutdown() {
    let s = Setup::load();
    let c = s.container();
    let pre = &c["lifecycle"]["preStop"];
    assert!(pre.is_object(), "deployment.yaml: a preStop hook");
    let sleep = pre["sleep"]["seconds"]
        .as_u64()
        .expect("deployment.yaml: preStop sleeps (sleep.seconds)");
    assert!(
        sleep > 0,
        "preStop waits for the endpoints to be removed before SIGTERM"
    );
    let grace = s
        .deployment()
        .int("/spec/template/spec/terminationGracePeriodSeconds");
    let spread = s.server("drain_spread");
    let timeout = s.server("shutdown_timeout");
    let not_ready = s.server("shutdown_grace");
    assert!(
        spread < timeout,
        "drain_spread runs inside shutdown_timeout"
    );
    // The kubelet's countdown starts before preStop; after it wsgate stays not
    // ready for shutdown_grace, then drains for at most shutdown_timeout.
    let needed = Duration::from_secs(sleep) + not_ready + timeout;
    assert!(
        Duration::from_secs(grace) > needed,
        "terminationGracePeriodSeconds {grace} must exceed preStop {sleep}s + shutdown_grace {not_ready:?} + shutdown_timeout {timeout:?}"
    );
}

#[test]
fn config_and_certificates_are_mounted_where_the_config_points() {
    let s = Setup::load();
    let conf_dir = s.mount_of("configMap", "name", "wsgate-config");
    assert_eq!(
        s.config_arg(),
        format!("{conf_dir}/wsgate.toml"),
        "the container's -c is the ConfigMap's wsgate.toml in its mount"
    );
    let secret = find(&s.docs, "Secret", "wsgate-tls");
    assert_eq!(secret.str("/type"), "kubernetes.io/tls");
    assert!(secret.at("/data/tls.crt").is_string() && secret.at("/data/tls.key").is_string());
    let tls_dir = s.mount_of("secret", "secretName", "wsgate-tls");
    let l = s.listener();
    assert_eq!(l["cert"].as_str(), Some(&*format!("{tls_dir}/tls.crt")));
    assert_eq!(l["key"].as_str(), Some(&*format!("{tls_dir}/tls.key")));
}

#[test]
fn container_is_locked_down() {
    let s = Setup::load();
    let c = s.container();
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "a memory limit (max_memory's default is a share of it)"
    );
    let d = s.deployment();
    let labels = d.at("/spec/template/metadata/labels");
    for (k, v) in d.at("/spec/selector/matchLabels").as_object().unwrap() {
        assert_eq!(
            &labels[k], v,
            "the Deployment's selector matches its pods ({k})"
        );
    }
}

#[test]
fn public_service_keeps_client_addresses_and_reaches_the_listener() {
    let s = Setup::load();
    let svc = find(&s.docs, "Service", "wsgate");
    assert_eq!(svc.str("/spec/type"), "LoadBalancer");
    assert_eq!(svc.str("/spec/externalTrafficPolicy"), "Local");
    let labels = s.deployment().at("/spec/template/metadata/labels");
    for (k, v) in svc.at("/spec/selector").as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the wsgate pods ({k})");
    }
    let l = s.listener();
    assert_eq!(
        l["proxy_protocol"].as_bool(),
        Some(true),
        "the listener reads the balancer's PROXY header"
    );
    assert!(
        l["trusted_proxies"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "trusted_proxies lists the balancers"
    );
    let ports = svc.at("/spec/ports").as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        s.container_port(&ports[0]["targetPort"]),
        port_of(l["address"].as_str().unwrap()),
        "the Service's targetPort is the TLS listener's port"
    );
    let text = std::fs::read_to_string(Path::new(DIR).join("service.yaml")).unwrap();
    for annotation in [
        "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: \"*\"",
        "service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol: \"true\"",
        "load-balancer.hetzner.cloud/uses-proxyprotocol: \"true\"",
        "service.beta.kubernetes.io/scw-loadbalancer-proxy-protocol-v2: \"*\"",
        "loadbalancer.openstack.org/proxy-protocol: \"v2\"",
        "service.beta.kubernetes.io/linode-loadbalancer-default-proxy-protocol: \"v2\"",
    ] {
        assert!(
            text.contains(&format!("# {annotation}")),
            "service.yaml documents {annotation}"
        );
    }
}

#[test]
fn headless_service_is_the_pools_backend_address() {
    let s = Setup::load();
    let pools = s.conf["pool"].as_array().expect("[[pool]]");
    let backends: Vec<&toml::Table> = pools
        .iter()
        .flat_map(|p| p["backend"].as_array().unwrap())
        .map(|b| b.as_table().unwrap())
        .collect();
    assert_eq!(backends.len(), 1, "one backend entry: the headless Service");
    let b = backends[0];
    let address = b["address"].as_str().unwrap();
    assert!(
        b.get("resolve").and_then(|r| r.as_str()).is_some(),
        "the headless Service's name is re-resolved (resolve = ...), not looked up once"
    );
    let (host, _) = address.rsplit_once(':').unwrap();
    let headless: Vec<&Doc> = all(&s.docs, "Service")
        .into_iter()
        .filter(|d| d.v["spec"]["clusterIP"] == "None")
        .collect();
    assert_eq!(headless.len(), 1, "one headless Service (clusterIP: None)");
    let h = headless[0];
    let ns = h.v["metadata"]["namespace"].as_str().unwrap_or("default");
    assert_eq!(
        host.trim_end_matches('.'),
        format!("{}.{ns}.svc.cluster.local", h.str("/metadata/name")),
        "the pool's backend is the headless Service's DNS name"
    );
    let ports = h.at("/spec/ports").as_array().unwrap();
    assert!(
        ports.iter().any(|p| {
            let target = p.get("targetPort").unwrap_or(&p["port"]);
            target.as_u64() == Some(port_of(address))
        }),
        "the backend address's port is the pods' port (a headless Service's targetPort)"
    );
}

/// Writes the pod's view of every volume mount of the wsgate container under
/// `root` and returns the path of the config there.
fn pod_filesystem(s: &Setup, root: &Path) -> PathBuf {
    let c = s.container();
    let mut conf = s.conf_text.clone();
    for m in c["volumeMounts"].as_array().unwrap() {
        let mount = m["mountPath"].as_str().unwrap().trim_end_matches('/');
        let dir = root.join(mount.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let vol = s.volume(m["name"].as_str().unwrap());
        if let Some(name) = vol["secret"]["secretName"].as_str() {
            let secret = find(&s.docs, "Secret", name);
            let made = root.join("generated");
            std::fs::create_dir_all(&made).unwrap();
            let pair = common::certs::good_chain(&made);
            for key in secret.at("/data").as_object().unwrap().keys() {
                let from = match key.as_str() {
                    "tls.crt" => &pair.cert,
                    "tls.key" => &pair.key,
                    other => panic!("secret.yaml: unexpected key {other:?}"),
                };
                std::fs::copy(from, dir.join(key)).unwrap();
            }
        } else if vol["configMap"]["name"].is_string() {
            // Written below, once every path in it is rewritten.
        } else {
            panic!("deployment.yaml: volume {vol} is neither a ConfigMap nor a Secret");
        }
        conf = conf.replace(
            &format!("\"{mount}/"),
            &format!("\"{}/", dir.to_str().unwrap()),
        );
    }
    let arg = s.config_arg();
    let path = root.join(arg.trim_start_matches('/'));
    std::fs::write(&path, conf).unwrap();
    path
}

#[test]
fn the_configmaps_config_passes_wsgate_check() {
    let s = Setup::load();
    let root = common::bin::scratch_dir("k8s-pod");
    let path = pod_filesystem(&s, &root);
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("wsgate runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        out.status.success(),
        "wsgate check on configmap.yaml's wsgate.toml failed:\n{text}"
    );
    assert!(text.contains("configuration OK"), "{text}");
}

#[test]
fn durations_parse_as_the_config_writes_them() {
    assert_eq!(duration("250ms"), Duration::from_millis(250));
    assert_eq!(duration("10s"), Duration::from_secs(10));
    assert_eq!(duration("2m"), Duration::from_secs(120));
    assert_eq!(duration("1h"), Duration::from_secs(3600));
}
