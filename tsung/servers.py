"""The servers tsung/run measures: each is set up in its own folder, listens on
free ports, is provisioned with the same accounts, and reports the offline
messages it stored for the offline recipients.

Every target has: label, slug, setup(plan), start(), endpoints(), pids(),
offline_stored(plan), stop().
"""

import base64
import glob
import hashlib
import hmac
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
import uuid

import piefxis

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- helpers


def free_port_block(count, avoid=()):
    """A base port such that base..base+count-1 are all free on 127.0.0.1."""
    for _ in range(200):
        base = random.randint(20000, 60000 - count)
        ports = range(base, base + count)
        if any(p in avoid for p in ports):
            continue
        sockets = []
        try:
            for port in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise SystemExit("no block of free ports found")


def wait_for_port(port, what, timeout=60, process=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{what} exited (status {process.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} is not listening on {port} after {timeout} s")


def self_signed(dir):
    key, cert = os.path.join(dir, "key.pem"), os.path.join(dir, "cert.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return key, cert


def stop_process(process, timeout=20):
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid):
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid):
    """CPU seconds a process spent in its own code and in the kernel."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def open_file_limit(pid):
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def memory_kib(pid):
    """The process's proportional set size: its resident memory with each
    shared page (the binary's code, libraries) divided among the processes
    that map it, so the sum over a cluster's processes counts what the
    machine holds, not the binary once per node. VmRSS where the kernel
    has no smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return status_kib(pid, "VmRSS")


class ProcSampler:
    """CPU seconds used by the server processes during the run, their summed
    memory (proportional set size) before it and at its peak (sampled every
    0.2 s)."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.stopping = threading.Event()
        self.peak_kib = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _total(self, read, zero):
        """`read(pid)` summed over the servers still running."""
        total = zero
        for pid in self.pids:
            try:
                total += read(pid)
            except OSError:
                pass
        return total

    def _rss(self):
        return self._total(memory_kib, 0)

    def _cpu(self):
        return self._total(cpu_seconds, 0.0)

    def start(self):
        self.cpu_start = self._cpu()
        self.rss_start = self._rss()
        self.peak_kib = self.rss_start
        self.thread.start()

    def _loop(self):
        while not self.stopping.wait(0.2):
            self.peak_kib = max(self.peak_kib, self._rss())

    def stop(self):
        self.stopping.set()
        self.thread.join()
        if not self.pids:
            return None
        return {
            "processes": len(self.pids),
            "cpu_seconds": round(self._cpu() - self.cpu_start, 2),
            "rss_start_mib": round(self.rss_start / 1024, 1),
            "rss_peak_mib": round(self.peak_kib / 1024, 1),
        }


# ---------------------------------------------------------------- Starling


class Starling:
    """A local cluster of N `starling serve` processes sharing one SQLite
    store, configured as `starling cluster up` does, on free ports, with
    PLAIN allowed before TLS, no per-IP connection limits (every Tsung
    session comes from 127.0.0.1), and an idle timeout of an hour: Tsung
    does not answer XEP-0199 pings, and a steady session's random think
    times can leave it silent for longer than the default 10 minutes
    (Prosody and ejabberd close no idle client by default)."""

    def __init__(self, binary, nodes, work, iterations):
        if not os.access(binary, os.X_OK):
            raise SystemExit(
                f"{binary} not found: cargo build --release -p starling-xmpp, or pass --starling"
            )
        self.binary = binary
        self.nodes = nodes
        self.iterations = iterations
        self.label = f"Starling {nodes} node" + ("s" if nodes > 1 else "")
        self.slug = f"starling{nodes}"
        self.dir = os.path.join(work, self.slug)
        self.processes = []

    def setup(self, plan):
        os.makedirs(self.dir, exist_ok=True)
        self.domain = plan.domain
        self.c2s = free_port_block(self.nodes)
        self.http = free_port_block(self.nodes, avoid=range(self.c2s, self.c2s + self.nodes))
        taken = set(range(self.c2s, self.c2s + self.nodes)) | set(range(self.http, self.http + self.nodes))
        self.peer = free_port_block(self.nodes, avoid=taken)
        self.store = os.path.join(self.dir, "starling.db")
        secret = uuid.uuid4().hex
        self.configs = []
        for i in range(self.nodes):
            seeds = ", ".join(
                f'"127.0.0.1:{self.peer + j}"' for j in range(self.nodes) if j != i
            )
            config = os.path.join(self.dir, f"node{i + 1}.toml")
            with open(config, "w") as out:
                out.write(
                    f'[server]\ndomain = "{plan.domain}"\ndata_dir = "node{i + 1}"\n\n'
                    f'[c2s]\nbind = "127.0.0.1:{self.c2s + i}"\nallow_plain_without_tls = true\n'
                    # Tsung speaks STARTTLS only; the default direct TLS port would collide.
                    'direct_tls_bind = ""\n\n'
                    '[s2s]\nbind = ""\n\n'
                    f'[http]\nbind = "127.0.0.1:{self.http + i}"\n\n'
                    f'[storage]\nurl = "sqlite://{self.store}"\n\n'
                    "[limits]\nconnections_per_ip_per_sec = 0\nauth_failures_per_ip = 0\n"
                    "idle_timeout_secs = 3600\n\n"
                    "[offline]\nmax_per_user = 100000\n\n"
                    f'[cluster]\nenabled = {"true" if self.nodes > 1 else "false"}\n'
                    f'node_name = "node{i + 1}"\nbind = "127.0.0.1:{self.peer + i}"\n'
                    f'seeds = [{seeds}]\nsecret = "{secret}"\n\n'
                    # As Tsung's muc:join expects: new rooms open at once (instant
                    # rooms), no occupant or rate limit below the load's.
                    "[modules.muc]\nlock_new_rooms = false\nmax_occupants = 100000\n"
                    "messages_per_second = 1000.0\nmessage_burst = 1000\n\n"
                    "[modules.muc.default_room]\nmax_users = 0\n"
                )
            self.configs.append(config)
        for prefix, count, password, roster in [
            (plan.prefix, plan.count, plan.password, plan.roster_size),
            (plan.offline_prefix, plan.offline_count, plan.offline_password(), 0),
        ]:
            result = subprocess.run(
                [self.binary, "--config", self.configs[0], "user", "provision",
                 "--prefix", prefix, "--count", str(count), "--password", password,
                 "--roster-size", str(roster), "--iterations", str(self.iterations)],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise SystemExit(f"starling user provision failed:\n{result.stderr}")
            print("   ", result.stdout.strip(), flush=True)

    def start(self):
        for i, config in enumerate(self.configs):
            log = open(os.path.join(self.dir, f"node{i + 1}.log"), "w")
            self.processes.append(
                subprocess.Popen(
                    [self.binary, "--config", config, "serve"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    # Warnings, and each stream error with its condition (the
                    # runner prints them when a run fails).
                    env=dict(os.environ, RUST_LOG=os.environ.get(
                        "RUST_LOG", "warn,starling_xmpp::c2s::connection=info")),
                )
            )
        for i, process in enumerate(self.processes):
            wait_for_port(self.c2s + i, f"starling node{i + 1}", process=process)
        if self.nodes > 1:
            self._wait_for_members()

    def _metrics(self, i):
        url = f"http://127.0.0.1:{self.http + i}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def _wait_for_members(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                texts = [self._metrics(i) for i in range(self.nodes)]
                up = [re.search(r'^starling_cluster_members\{state="up"\} (\d+)', t, re.M) for t in texts]
                # A node takes logins only once it holds the directory.
                ready = [re.search(r"^starling_cluster_ready 1\b", t, re.M) for t in texts]
                if all(u and int(u.group(1)) == self.nodes for u in up) and all(ready):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the {self.nodes} Starling nodes did not form a cluster in {timeout} s")

    def endpoints(self):
        return [("127.0.0.1", self.c2s + i) for i in range(self.nodes)]

    def pids(self):
        return [p.pid for p in self.processes]

    def counters(self):
        """Stream errors and stored messages by node, from /metrics: where a
        Tsung error or a missing message came from."""
        totals = {}
        for i in range(self.nodes):
            for line in self._metrics(i).splitlines():
                for name in (
                    "starling_logins_total",  # to check Tsung's session count against
                    "starling_stream_errors_total",
                    'starling_routing_outcomes_total{outcome="stored"}',
                ):
                    if line.startswith(name + " "):
                        totals[name] = totals.get(name, 0) + float(line.split()[-1])
        return totals

    PUBSUB_COUNTERS = {
        "starling_pubsub_published_total": "published",
        "starling_pubsub_notifications_total": "notifications",
        "starling_pubsub_cluster_events_sent_total": "cluster events sent",
        "starling_pubsub_cluster_events_received_total": "received",
        "starling_pubsub_cluster_events_failed_total": "failed",
    }

    def pubsub_counters(self):
        """Items published and notifications handed to sessions, summed over
        the nodes, and the events that crossed between them (/metrics)."""
        totals = dict.fromkeys(self.PUBSUB_COUNTERS.values(), 0.0)
        try:
            for i in range(self.nodes):
                for line in self._metrics(i).splitlines():
                    name, _, value = line.partition(" ")
                    if name in self.PUBSUB_COUNTERS:
                        totals[self.PUBSUB_COUNTERS[name]] += float(value)
        except OSError as error:
            print(f"    /metrics unreadable: {error}", flush=True)
            return None
        return totals

    def offline_stored(self, plan):
        try:
            print(f"    /metrics: {self.counters()}", flush=True)
        except OSError as error:
            print(f"    /metrics unreadable: {error}", flush=True)
        db = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=30)
        try:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM offline_messages WHERE username LIKE ?",
                (plan.offline_prefix + "%",),
            ).fetchone()
        finally:
            db.close()
        return count

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            stop_process(process)


# ---------------------------------------------------------------- Prosody


def prosody_encode(name):
    """Prosody's datamanager file-name encoding."""
    return "".join(c if c.isascii() and c.isalnum() else "%%%02x" % ord(c) for c in name)


def lua_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody:
    """Debian's Prosody with internal storage. Prosody 0.12 ships no XEP-0227
    importer (the upstream tools/xep227toprosody.lua is not packaged), so the
    accounts of the XEP-0227 file are written straight into its data files:
    SCRAM-SHA-1 credentials (mod_auth_internal_hashed) and roster files."""

    label = "Prosody"
    slug = "prosody"

    def __init__(self, work, iterations):
        if not os.path.exists("/usr/bin/prosody"):
            raise SystemExit("prosody is not installed: apt-get install prosody")
        self.dir = os.path.join(work, "prosody")
        self.iterations = iterations
        self.process = None
        # For other runners (tests/bench/web.py): more modules, and global
        # settings written before the VirtualHost.
        self.extra_modules = ()
        self.extra_global = ""

    def setup(self, plan):
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.port = free_port_block(1)
        key, cert = self_signed(self.dir)
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as out:
            out.write(f"""run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.data}"
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{self.dir}/prosody.log" }} }}
network_backend = "epoll"
network_settings = {{ nagle = false }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = false
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "version", "offline"{"".join(", " + lua_string(m) for m in self.extra_modules)} }}
modules_disabled = {{ "s2s" }}
ssl = {{ certificate = "{cert}", key = "{key}" }}
{self.extra_global}

VirtualHost "{plan.domain}"

-- Prosody lets only admins create pub/sub nodes: the load-test accounts
-- (any of them may be a publisher) are admins of this component only.
Component "conference.{plan.domain}" "muc"
    -- As Tsung's muc:join expects: new rooms open at once (instant rooms).
    muc_room_locking = false

Component "pubsub.{plan.domain}" "pubsub"
    admins = {{ {", ".join(lua_string(f"{plan.prefix}{i}@{plan.domain}") for i in range(1, plan.count + 1))} }}
""")
        self.xep227 = os.path.join(self.dir, "accounts.xml")
        piefxis.write(plan, self.xep227)
        self._import(plan)

    def _import(self, plan):
        host = os.path.join(self.data, prosody_encode(plan.domain))
        accounts_dir = os.path.join(host, "accounts")
        roster_dir = os.path.join(host, "roster")
        os.makedirs(accounts_dir, exist_ok=True)
        os.makedirs(roster_dir, exist_ok=True)
        for name, password, contacts in piefxis.read(self.xep227):
            salt = str(uuid.uuid4())
            salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), self.iterations)
            client_key = hmac.new(salted, b"Client Key", "sha1").digest()
            stored_key = hashlib.sha1(client_key).hexdigest()
            server_key = hmac.new(salted, b"Server Key", "sha1").hexdigest()
            with open(os.path.join(accounts_dir, prosody_encode(name) + ".dat"), "w") as out:
                out.write(
                    f'return {{\n\t["iteration_count"] = {self.iterations};\n'
                    f'\t["salt"] = {lua_string(salt)};\n\t["server_key"] = "{server_key}";\n'
                    f'\t["stored_key"] = "{stored_key}";\n}};\n'
                )
            if contacts:
                with open(os.path.join(roster_dir, prosody_encode(name) + ".dat"), "w") as out:
                    out.write('return {\n\t[false] = { ["version"] = 1; ["pending"] = {}; };\n')
                    for jid in contacts:
                        out.write(
                            f'\t[{lua_string(jid)}] = {{ ["subscription"] = "both"; ["groups"] = {{}}; }};\n'
                        )
                    out.write("};\n")

    def start(self):
        log = open(os.path.join(self.dir, "prosody.out"), "w")
        self.process = subprocess.Popen(
            ["prosody", "--config", self.config, "-F"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        wait_for_port(self.port, "prosody", process=self.process)

    def endpoints(self):
        return [("127.0.0.1", self.port)]

    def pids(self):
        return [self.process.pid]

    def offline_stored(self, plan):
        # mod_offline keeps one archive list per user: one `item(` per message.
        pattern = os.path.join(self.data, prosody_encode(plan.domain), "offline",
                               prosody_encode(plan.offline_prefix) + "*.list")
        count = 0
        for path in glob.glob(pattern):
            with open(path) as f:
                count += f.read().count("item(")
        return count

    def stop(self):
        stop_process(self.process)


# ---------------------------------------------------------------- ejabberd


class Ejabberd:
    """Debian's ejabberd with Mnesia in its own spool folder and its own Erlang
    node name, provisioned in one call with `ejabberdctl import_piefxis`.
    Credentials are stored as SCRAM-SHA-1 (hashed on import), as Starling and
    Prosody store theirs. The node runs as the invoking user (see setup)."""

    label = "ejabberd"
    slug = "ejabberd"

    def __init__(self, work):
        if not os.path.exists("/usr/sbin/ejabberdctl"):
            raise SystemExit("ejabberd is not installed: apt-get install ejabberd")
        self.dir = os.path.join(work, "ejabberd")
        self.node = f"tsungbench{os.getpid()}@localhost"
        self.pid = None
        # For other runners (tests/bench/web.py): YAML appended to the
        # listen list and to the modules (indented as those entries).
        self.extra_listen = ""
        self.extra_modules = ""

    def ctl(self, *args, check=True, timeout=600):
        # --no-timeout: a large import_piefxis takes longer than the RPC default.
        command = ["ejabberdctl", "--no-timeout", "--config-dir", self.dir, "--ctl-config",
                   os.path.join(self.dir, "ejabberdctl.cfg"), "--logs", self.dir,
                   "--spool", os.path.join(self.dir, "spool"), "--node", self.node, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result

    def setup(self, plan):
        os.makedirs(os.path.join(self.dir, "spool"), exist_ok=True)
        self.port = free_port_block(1)
        key, cert = self_signed(self.dir)
        pem = os.path.join(self.dir, "server.pem")
        with open(pem, "w") as out:
            out.write(open(cert).read() + open(key).read())
        shutil.copy("/etc/ejabberd/inetrc", os.path.join(self.dir, "inetrc"))
        with open(os.path.join(self.dir, "ejabberdctl.cfg"), "w") as out:
            # Sourced by ejabberdctl. Run as the invoking user: `su ejabberd`
            # would reset the open-file limit to 1024 through PAM, and the
            # node would refuse connections beyond about a thousand.
            out.write(
                f"ERLANG_NODE={self.node}\nERL_MAX_PORTS=250000\nPOLL=true\n"
                "EXEC_CMD=as_current_user\n"
            )
        with open(os.path.join(self.dir, "ejabberd.yml"), "w") as out:
            out.write(f"""hosts:
  - "{plan.domain}"
loglevel: warning
certfiles:
  - "{pem}"
listen:
  -
    port: {self.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
{self.extra_listen}auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
default_db: mnesia
shaper_rules:
  max_user_offline_messages: 100000
  max_user_sessions: 10
modules:
  mod_disco: {{}}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {{}}
  mod_roster:
    versioning: false
  mod_version: {{}}
  mod_muc:
    max_users: 100000
  mod_pubsub:
    plugins: [flat]
    access_createnode: all
{self.extra_modules}""")
        self.xep227 = os.path.join(self.dir, "accounts.xml")
        piefxis.write(plan, self.xep227)
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", self.dir], check=True)
        os.chmod(os.path.dirname(self.dir), 0o755)
        # import_piefxis needs the node running; started here, kept for the run.
        self._start_node()
        started = time.time()
        self.ctl("import_piefxis", self.xep227, timeout=3600)
        print(f"    ejabberdctl import_piefxis: {time.time() - started:.1f} s", flush=True)

    def _start_node(self):
        self.ctl("start")
        # `ejabberdctl started` waits forever on a node that failed to start.
        deadline = time.time() + 120
        while self.ctl("status", check=False, timeout=30).returncode != 0:
            if time.time() > deadline:
                raise SystemExit(f"ejabberd did not start; see {self.dir}/ejabberd.log")
            time.sleep(1)
        wait_for_port(self.port, "ejabberd")
        self.pid = self._beam_pid()
        print(f"    ejabberd open-file limit {open_file_limit(self.pid)}", flush=True)

    def _beam_pid(self):
        """The Erlang VM of our node (the one started with our node name)."""
        name = self.node.split("@")[0].encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"beam.smp") and any(a.startswith(name + b"@") for a in args):
                return int(entry)
        raise SystemExit("could not find ejabberd's Erlang VM")

    def start(self):
        pass  # already running since the import

    def endpoints(self):
        return [("127.0.0.1", self.port)]

    def pids(self):
        return [self.pid]

    def offline_stored(self, plan):
        # One call: the XEP-0227 export carries every user's offline messages.
        out = os.path.join(self.dir, "export")
        os.makedirs(out, exist_ok=True)
        subprocess.run(["chown", "ejabberd:ejabberd", out], check=True)
        self.ctl("export_piefxis", out)
        count = 0
        for path in glob.glob(os.path.join(out, "*.xml")):
            for name, messages in piefxis.offline_counts(path):
                if name.startswith(plan.offline_prefix):
                    count += messages
        return count

    def stop(self):
        if self.pid is None:
            return
        self.ctl("stop", check=False, timeout=60)
        self.ctl("stopped", check=False, timeout=60)
        try:
            os.kill(self.pid, 0)
            os.kill(self.pid, 15)
        except ProcessLookupError:
            pass
        self.pid = None


# ---------------------------------------------------------------- external


class External:
    """Servers someone else runs and provisioned: only Tsung's figures."""

    label = "external"
    slug = "external"

    def __init__(self, servers):
        self.list = []
        for item in servers.split(","):
            host, _, port = item.strip().rpartition(":")
            self.list.append((host or "127.0.0.1", int(port)))

    def setup(self, plan):
        pass

    def start(self):
        pass

    def endpoints(self):
        return self.list

    def pids(self):
        return []

    def offline_stored(self, plan):
        return None

    def stop(self):
        pass
