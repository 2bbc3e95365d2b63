//! The .deb and .rpm packages, built by `packaging/build.sh` and exercised for real. The .debs
//! are installed, upgraded (once with a config the new binary accepts, once with one it
//! rejects), removed and purged inside a Debian bookworm root made by `debootstrap` (chroot);
//! `lintian` checks them. The .rpms are read with `rpm -qlp` and `rpm -qp --scripts`.
//!
//! The chroot has no systemd. For the upgrade steps the test makes the maintainer scripts
//! believe it runs (`/run/systemd/system`) and puts recording stand-ins for `systemctl` and
//! `deb-systemd-invoke` first on PATH, so it sees which restarts and stops the scripts ask for.
//! The Debian root is made once and cached as a tarball outside the clone (`VIGIL_DEBROOT_CACHE`,
//! default `/var/cache/vigil-debroot`), so later runs only unpack it.
//!
//! Needs root (chroot), lintian, rpm, cargo-deb, cargo-generate-rpm, and debootstrap on the
//! first run; without one it is skipped loudly unless `VIGIL_REQUIRE_EXTERNAL=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const REQUIRE_EXTERNAL_ENV: &str = "VIGIL_REQUIRE_EXTERNAL";
const DEBROOT_CACHE_ENV: &str = "VIGIL_DEBROOT_CACHE";
const DEFAULT_DEBROOT_CACHE: &str = "/var/cache/vigil-debroot";
/// Packages the cached root gets beyond minbase: what the .debs depend on (adduser) and what
/// the generated unit snippets call (deb-systemd-helper), so the installs work offline.
const DEBROOT_INCLUDE: &str = "adduser,init-system-helpers";
const DEBROOT_TARBALL: &str = "bookworm-minbase-adduser-init-system-helpers.tar";
/// Where the test's stand-ins for `systemctl` and `deb-systemd-invoke` record their arguments.
const SYSTEMD_CALLS: &str = "/tmp/systemd-calls";

fn required() -> bool {
    std::env::var(REQUIRE_EXTERNAL_ENV).as_deref() == Ok("1")
}

/// `true` to go on; `false` after a loud skip (a panic when external tools are required).
fn need(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!required(), "{what}, but {REQUIRE_EXTERNAL_ENV}=1");
    eprintln!(
        "SKIPPED packages test: {what} (set {REQUIRE_EXTERNAL_ENV}=1 to make this a failure)"
    );
    false
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|out| out.status.success())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `command`, prints what it said, and returns it; panics if it failed.
fn check(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let said = text(&out);
    eprintln!("--- {what}:\n{said}");
    assert!(out.status.success(), "{what} failed ({}):\n{said}", out.status);
    said
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the packages of `version` with packaging/build.sh into `out`.
fn build(out: &Path, version: &str, formats: &str) {
    check(
        Command::new("bash")
            .arg(workspace().join("packaging/build.sh"))
            .arg(out)
            .env("VIGIL_PKG_VERSION", version)
            .env("VIGIL_PKG_FORMATS", formats)
            // The .debs built here are installed and thrown away: weaker compression is enough.
            .env("VIGIL_PKG_FAST", "1"),
        &format!("packaging/build.sh {version} ({formats})"),
    );
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn package(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    assert_eq!(found.len(), 1, "want one {prefix}*{suffix} in {}: {found:?}", dir.display());
    found.into_iter().next().expect("one package")
}

/// The first Debian mirror named in /etc/apt/sources.list or /etc/apt/sources.list.d/.
fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(body) = std::fs::read_to_string(&file) else { continue };
        for line in body.lines().map(str::trim) {
            let uri = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|word| word.starts_with("http"))
            } else {
                None
            };
            if let Some(uri) = uri.filter(|uri| uri.ends_with("/debian")) {
                return uri.to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The cached Debian root tarball, made with debootstrap if it is not there yet; `None` after a
/// skip when it must be made and debootstrap is missing.
fn debroot_tarball() -> Option<PathBuf> {
    let cache = PathBuf::from(
        std::env::var_os(DEBROOT_CACHE_ENV).unwrap_or_else(|| DEFAULT_DEBROOT_CACHE.into()),
    );
    let tarball = cache.join(DEBROOT_TARBALL);
    if tarball.is_file() {
        return Some(tarball);
    }
    if !need(
        Path::new("/usr/sbin/debootstrap").is_file(),
        "debootstrap is missing and there is no cached root (apt-get install debootstrap)",
    ) {
        return None;
    }
    std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
    let fresh = tempfile::tempdir_in(&cache).expect("temporary directory for debootstrap");
    let started = Instant::now();
    check(
        Command::new("/usr/sbin/debootstrap")
            .args(["--variant=minbase", &format!("--include={DEBROOT_INCLUDE}"), "bookworm"])
            .arg(fresh.path().join("root"))
            .arg(debian_mirror()),
        "debootstrap",
    );
    let partial = tarball.with_extension("tar.partial");
    check(
        Command::new("tar")
            .arg("-C")
            .arg(fresh.path().join("root"))
            .args(["--numeric-owner", "-cpf"])
            .arg(&partial)
            .arg("."),
        "tar the Debian root",
    );
    std::fs::rename(&partial, &tarball).expect("store the Debian root tarball");
    eprintln!("made the Debian root in {:.0?}", started.elapsed());
    Some(tarball)
}

/// A Debian root unpacked from the cached tarball into a temporary directory.
struct DebRoot {
    dir: tempfile::TempDir,
}

impl DebRoot {
    fn unpack(tarball: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        check(
            Command::new("tar")
                .arg("-C")
                .arg(dir.path())
                .args(["--numeric-owner", "-xpf"])
                .arg(tarball),
            "unpack the Debian root",
        );
        DebRoot { dir }
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// `script` run by /bin/sh in the chroot, as root, with a clean environment.
    fn run(&self, script: &str) -> Output {
        Command::new("chroot")
            .arg(self.dir.path())
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("chroot {script}: {e}"))
    }

    /// Like [`DebRoot::run`], printing the output; panics if the script failed.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        let said = text(&out);
        eprintln!("--- chroot: {script}\n{said}");
        assert!(out.status.success(), "in the chroot, `{script}` failed ({}):\n{said}", out.status);
        said
    }

    /// Like [`DebRoot::run`], printing the output; panics if the script succeeded.
    fn fails(&self, script: &str) -> String {
        let out = self.run(script);
        let said = text(&out);
        eprintln!("--- chroot (must fail): {script}\n{said}");
        assert!(!out.status.success(), "in the chroot, `{script}` succeeded:\n{said}");
        said
    }

    fn read(&self, inside: &str) -> String {
        std::fs::read_to_string(self.path(inside)).unwrap_or_else(|e| panic!("{inside}: {e}"))
    }

    fn write(&self, inside: &str, body: &str) {
        std::fs::write(self.path(inside), body).unwrap_or_else(|e| panic!("{inside}: {e}"));
    }

    /// `mode owner group` of a path in the chroot, names resolved there.
    fn mode(&self, inside: &str) -> String {
        self.ok(&format!("stat -c '%a %U %G' {inside}")).trim().to_owned()
    }

    /// SHA-256 of every file under `dir`, one `hash  path` line each, sorted by path.
    fn hashes(&self, dir: &str) -> String {
        self.ok(&format!("cd {dir} && find . -type f -print0 | sort -z | xargs -0 sha256sum"))
    }

    /// Every path in the chroot except the package manager's own records, logs, caches, the
    /// account files' backups and the test's scratch space, sorted: what "nothing left" is
    /// compared on.
    fn all_paths(&self) -> Vec<String> {
        let listing =
            self.ok("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /tmp \
             -o -path /run -o -path /var/lib/dpkg -o -path /var/log -o -path /var/cache \
             -o -path /usr/local/sbin \\) -prune -o -print | sort");
        // The backups the shadow tools write beside the account files (the users are checked
        // gone on their own).
        let account_backups = ["/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-"];
        listing.lines().filter(|path| !account_backups.contains(path)).map(str::to_owned).collect()
    }

    /// The service actions recorded since the last call, and clears the record.
    fn take_systemd_calls(&self) -> String {
        let calls = std::fs::read_to_string(self.path(SYSTEMD_CALLS)).unwrap_or_default();
        self.write(SYSTEMD_CALLS, "");
        calls
    }
}

fn installed_version(root: &DebRoot, package: &str) -> String {
    root.ok(&format!("dpkg-query -W -f='${{Version}} ${{Status}}' {package}")).trim().to_owned()
}

fn lintian_has_no_errors(deb: &Path) {
    let out = Command::new("lintian")
        .args(["--no-tag-display-limit", "--display-info"])
        .arg(deb)
        .output()
        .expect("run lintian");
    let said = text(&out);
    eprintln!("--- lintian {}:\n{said}", deb.display());
    let errors: Vec<&str> = said.lines().filter(|line| line.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors on {}:\n{}", deb.display(), errors.join("\n"));
    assert!(out.status.success(), "lintian failed on {} ({}):\n{said}", deb.display(), out.status);
}

/// `rpm -qlp` lists `files`, and the scriptlets check the config with the new binary before a
/// restart, and stop the service only on erase.
fn rpm_is_as_the_deb(rpm: &Path, files: &[&str], binary: &str) {
    let listed = check(Command::new("rpm").arg("-qlp").arg(rpm), "rpm -qlp");
    for file in files {
        assert!(
            listed.lines().any(|line| line == *file),
            "{} lacks {file}:\n{listed}",
            rpm.display()
        );
    }
    let config =
        check(Command::new("rpm").args(["-qp", "--configfiles"]).arg(rpm), "rpm --configfiles");
    assert!(
        config.lines().any(|line| line.starts_with("/etc/vigil/")),
        "no config file:\n{config}"
    );
    let requires =
        check(Command::new("rpm").args(["-qp", "--requires"]).arg(rpm), "rpm --requires");
    assert!(
        requires.contains("shadow-utils"),
        "{} does not require shadow-utils:\n{requires}",
        rpm.display()
    );

    let scripts = check(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm), "rpm --scripts");
    let scriptlets = scriptlets(&scripts);
    let section = |name: &str| -> &str {
        scriptlets
            .iter()
            .find(|(found, _)| found == name)
            .map(|(_, body)| body.as_str())
            .unwrap_or_else(|| panic!("{} has no {name} scriptlet:\n{scripts}", rpm.display()))
    };
    let post = section("postinstall");
    let checked = post
        .find(&format!("/usr/bin/{binary} --config"))
        .unwrap_or_else(|| panic!("postinstall does not run the new {binary}:\n{post}"));
    assert!(
        post[checked..].contains("check-config"),
        "postinstall does not check the config:\n{post}"
    );
    let exit_on_rejection = post.find("exit 1").expect("postinstall exits 1 on a rejected config");
    let restart =
        post.find(&format!("restart {binary}.service")).expect("postinstall restarts the service");
    assert!(
        checked < exit_on_rejection && exit_on_rejection < restart,
        "postinstall restarts before checking:\n{post}"
    );
    let preun = section("preuninstall");
    let erase_only = preun.find("\"$1\" -eq 0").expect("preuninstall tells erase from upgrade");
    let stop = preun.find("systemctl stop ").expect("preuninstall stops the service on erase");
    assert!(erase_only < stop, "preuninstall stops on upgrade too:\n{preun}");
    assert!(section("preinstall").contains("useradd --system"), "preinstall creates no user");
}

/// `rpm -qp --scripts` output split into (name, body): each scriptlet starts with a line like
/// `postinstall scriptlet:` or `postinstall scriptlet (using /bin/sh):`.
fn scriptlets(scripts: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in scripts.lines() {
        let header = line.strip_suffix(':').and_then(|head| head.split_once(" scriptlet")).filter(
            |(name, rest)| !name.contains(' ') && (rest.is_empty() || rest.starts_with(" (")),
        );
        match header {
            Some((name, _)) => found.push((name.to_owned(), String::new())),
            None => {
                if let Some((_, body)) = found.last_mut() {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    found
}

#[test]
#[ignore = "builds release packages and a Debian root: minutes"]
fn packages_install_upgrade_refuse_a_bad_config_and_purge_cleanly() {
    let started = Instant::now();
    if !need(rustix::process::geteuid().is_root(), "not root (chroot and dpkg need root)")
        || !need(
            runs("cargo", &["deb", "--version"]),
            "cargo-deb is missing (cargo install --locked cargo-deb)",
        )
        || !need(
            runs("cargo", &["generate-rpm", "--version"]),
            "cargo-generate-rpm is missing (cargo install --locked cargo-generate-rpm)",
        )
        || !need(runs("lintian", &["--version"]), "lintian is missing (apt-get install lintian)")
        || !need(runs("rpm", &["--version"]), "rpm is missing (apt-get install rpm)")
    {
        return;
    }
    let Some(tarball) = debroot_tarball() else { return };

    // Three builds: the release, a higher one, and a higher one still.
    let version = env!("CARGO_PKG_VERSION");
    let (v2, v3) = (format!("{version}.1"), format!("{version}.2"));
    let builds = tempfile::tempdir().expect("temporary directory");
    let (out1, out2, out3) =
        (builds.path().join("1"), builds.path().join("2"), builds.path().join("3"));
    build(&out1, version, "deb rpm");
    build(&out2, &v2, "deb");
    build(&out3, &v3, "deb");
    let agent_deb = package(&out1, "vigil-agent_", ".deb");
    let collector_deb = package(&out1, "vigil-collector_", ".deb");
    eprintln!("packages built after {:.0?}", started.elapsed());

    lintian_has_no_errors(&agent_deb);
    lintian_has_no_errors(&collector_deb);
    rpm_is_as_the_deb(
        &package(&out1, "vigil-agent-", ".rpm"),
        &[
            "/usr/bin/vigil-agent",
            "/etc/vigil/agent.toml",
            "/usr/lib/systemd/system/vigil-agent.service",
        ],
        "vigil-agent",
    );
    rpm_is_as_the_deb(
        &package(&out1, "vigil-collector-", ".rpm"),
        &[
            "/usr/bin/vigil-collector",
            "/usr/bin/vigilctl",
            "/etc/vigil/collector.toml",
            "/usr/lib/systemd/system/vigil-collector.service",
        ],
        "vigil-collector",
    );

    let root = DebRoot::unpack(&tarball);
    let before = root.all_paths();
    std::fs::create_dir_all(root.path("/tmp/pkgs")).expect("package directory in the root");
    for (n, out) in [(1, &out1), (2, &out2), (3, &out3)] {
        for name in ["vigil-agent_", "vigil-collector_"] {
            let deb = package(out, name, ".deb");
            std::fs::copy(&deb, root.path(&format!("/tmp/pkgs/{name}{n}.deb"))).expect("copy .deb");
        }
    }

    // Install, with no systemd running: enabled, not started, the agent says how to enrol.
    let said = root.ok("dpkg -i /tmp/pkgs/vigil-agent_1.deb /tmp/pkgs/vigil-collector_1.deb");
    assert!(said.contains("vigil-agent enroll --ca-sha256"), "no enrolment hint:\n{said}");
    assert!(
        said.contains("the collector was not (re)started"),
        "collector start not skipped:\n{said}"
    );
    for (package, binaries) in [
        ("vigil-agent", &["vigil-agent"][..]),
        ("vigil-collector", &["vigil-collector", "vigilctl"]),
    ] {
        assert!(installed_version(&root, package).starts_with(version));
        for binary in binaries {
            assert_eq!(root.mode(&format!("/usr/bin/{binary}")), "755 root root");
        }
        let unit = format!("/usr/lib/systemd/system/{package}.service");
        assert_eq!(
            root.read(&unit),
            std::fs::read_to_string(
                workspace().join(format!("packaging/systemd/{package}.service"))
            )
            .expect("unit in the checkout"),
            "{unit} is not the unit from packaging/systemd"
        );
        let wants = format!("/etc/systemd/system/multi-user.target.wants/{package}.service");
        let link = std::fs::read_link(root.path(&wants)).unwrap_or_else(|e| panic!("{wants}: {e}"));
        // deb-systemd-helper links to /lib/systemd/system, the same file on a merged /usr.
        assert!(
            link.ends_with(format!("systemd/system/{package}.service"))
                && root.path(&link.to_string_lossy()).is_file(),
            "{wants} points to {}",
            link.display()
        );
    }
    assert_eq!(root.mode("/etc/vigil"), "755 root root");
    assert_eq!(root.mode("/etc/vigil/agent.toml"), "640 root vigil-agent");
    assert_eq!(root.mode("/etc/vigil/collector.toml"), "640 root vigil");
    assert_eq!(root.mode("/var/lib/vigil-agent"), "700 vigil-agent vigil-agent");
    assert_eq!(root.mode("/var/lib/vigil-collector"), "700 vigil vigil");
    for (user, home) in
        [("vigil-agent", "/var/lib/vigil-agent"), ("vigil", "/var/lib/vigil-collector")]
    {
        let entry = root.ok(&format!("getent passwd {user}"));
        let fields: Vec<&str> = entry.trim().split(':').collect();
        assert_eq!(fields.len(), 7, "passwd entry {entry}");
        assert!(
            fields[2].parse::<u32>().expect("uid") < 1000,
            "{user} is not a system user: {entry}"
        );
        assert_eq!((fields[5], fields[6]), (home, "/usr/sbin/nologin"), "{entry}");
        root.ok(&format!("getent group {user}"));
    }
    assert_eq!(
        root.read("/etc/vigil/agent.toml"),
        std::fs::read_to_string(workspace().join("packaging/config/agent.example.toml"))
            .expect("agent example")
    );
    assert!(
        root.read("/etc/vigil/collector.toml")
            .contains("\ndata_dir = \"/var/lib/vigil-collector\"\n")
    );
    for package in ["vigil-agent", "vigil-collector"] {
        let conffiles = root.ok(&format!("dpkg-query -W -f='${{Conffiles}}' {package}"));
        assert!(
            conffiles
                .contains(&format!("/etc/vigil/{}.toml", package.trim_start_matches("vigil-"))),
            "{conffiles}"
        );
    }
    root.ok(
        "vigil-agent check-config && vigil-collector check-config && vigilctl --help >/dev/null",
    );

    // From here the scripts see a running systemd; stand-ins record what they ask of it.
    std::fs::create_dir_all(root.path("/run/systemd/system")).expect("/run/systemd/system");
    std::fs::create_dir_all(root.path("/usr/local/sbin")).expect("/usr/local/sbin");
    for tool in ["systemctl", "deb-systemd-invoke"] {
        root.write(
            &format!("/usr/local/sbin/{tool}"),
            &format!("#!/bin/sh\necho \"{tool} $*\" >> {SYSTEMD_CALLS}\n"),
        );
        root.ok(&format!("chmod 755 /usr/local/sbin/{tool}"));
    }

    // An enrolled host with a spool, a collector store, and an edited conffile.
    root.ok("mkdir -p /var/lib/vigil-agent/tls /var/lib/vigil-agent/spool && \
         echo '{\"host_id\":\"h-1\"}' > /var/lib/vigil-agent/tls/identity.json && \
         head -c 65536 /dev/urandom > /var/lib/vigil-agent/spool/00000000000000000001.seg && \
         head -c 100 /dev/urandom > /var/lib/vigil-agent/seq && \
         head -c 200000 /dev/urandom > /var/lib/vigil-collector/vigil.db && \
         chown -R vigil:vigil /var/lib/vigil-collector");
    let edited =
        root.read("/etc/vigil/agent.toml").replace("interval = \"10s\"", "interval = \"30s\"");
    root.write("/etc/vigil/agent.toml", &edited);
    let agent_state = root.hashes("/var/lib/vigil-agent");
    let collector_state = root.hashes("/var/lib/vigil-collector");
    root.take_systemd_calls();

    // Upgrade: conffile and state kept, each service restarted once, nothing stopped.
    root.ok("dpkg -i /tmp/pkgs/vigil-agent_2.deb /tmp/pkgs/vigil-collector_2.deb");
    assert_eq!(installed_version(&root, "vigil-agent"), format!("{v2} install ok installed"));
    assert_eq!(installed_version(&root, "vigil-collector"), format!("{v2} install ok installed"));
    assert_eq!(root.read("/etc/vigil/agent.toml"), edited, "the edited conffile was not kept");
    assert_eq!(root.hashes("/var/lib/vigil-agent"), agent_state, "agent state changed on upgrade");
    assert_eq!(
        root.hashes("/var/lib/vigil-collector"),
        collector_state,
        "store changed on upgrade"
    );
    assert_eq!(root.mode("/etc/vigil/agent.toml"), "640 root vigil-agent");
    let calls = root.take_systemd_calls();
    assert!(
        calls.contains("deb-systemd-invoke restart vigil-agent.service"),
        "agent not restarted: {calls}"
    );
    assert!(
        calls.contains("deb-systemd-invoke restart vigil-collector.service"),
        "collector not restarted: {calls}"
    );
    assert!(!calls.contains("stop"), "a service was stopped on upgrade: {calls}");

    // An upgrade whose new binary rejects the config: configure fails with the reason, nothing
    // is restarted or stopped, the state is untouched; fixed, `dpkg --configure -a` finishes it.
    root.write(
        "/etc/vigil/agent.toml",
        &edited.replace("interval = \"30s\"", "interval = \"soon\""),
    );
    let rejected = root.fails("vigil-agent check-config");
    let said = root.fails("dpkg -i /tmp/pkgs/vigil-agent_3.deb");
    assert!(said.contains("the new vigil-agent rejects /etc/vigil/agent.toml"), "{said}");
    let reason = rejected
        .lines()
        .find(|line| line.contains("interval"))
        .expect("check-config names the key");
    assert!(said.contains(reason.trim()), "the reason `{reason}` was not shown:\n{said}");
    assert!(said.contains("NOT restarted"), "{said}");
    assert_eq!(installed_version(&root, "vigil-agent"), format!("{v3} install ok half-configured"));
    let calls = root.take_systemd_calls();
    assert!(!calls.contains("restart") && !calls.contains("stop"), "service touched: {calls}");
    assert_eq!(root.hashes("/var/lib/vigil-agent"), agent_state, "agent state changed");
    root.write("/etc/vigil/agent.toml", &edited);
    root.ok("dpkg --configure -a");
    assert_eq!(installed_version(&root, "vigil-agent"), format!("{v3} install ok installed"));
    assert!(root.take_systemd_calls().contains("restart vigil-agent.service"));

    // Remove: services stopped, config, state and users kept.
    root.ok("dpkg -r vigil-agent vigil-collector");
    let calls = root.take_systemd_calls();
    assert!(
        calls.contains("stop vigil-agent.service")
            && calls.contains("stop vigil-collector.service"),
        "{calls}"
    );
    assert!(
        !root.path("/usr/bin/vigil-agent").exists() && !root.path("/usr/bin/vigilctl").exists()
    );
    assert_eq!(root.read("/etc/vigil/agent.toml"), edited, "remove dropped the config");
    assert_eq!(root.hashes("/var/lib/vigil-agent"), agent_state, "remove changed the state");
    root.ok("getent passwd vigil-agent && getent passwd vigil");

    // Purge: nothing is left.
    root.ok("dpkg --purge vigil-agent vigil-collector");
    for user in ["vigil-agent", "vigil"] {
        root.fails(&format!("getent passwd {user}"));
        root.fails(&format!("getent group {user}"));
    }
    let after = root.all_paths();
    let added: Vec<&String> = after.iter().filter(|path| !before.contains(path)).collect();
    assert!(added.is_empty(), "left after purge: {added:#?}");
    let removed: Vec<&String> = before.iter().filter(|path| !after.contains(path)).collect();
    assert!(removed.is_empty(), "gone after purge: {removed:#?}");
    eprintln!("packages test took {:.0?}", started.elapsed());
}
