//! `starling-load`: the load driver for XMPP servers.
//!
//! Run with, for example:
//!
//! ```text
//! starling-load login --server 127.0.0.1:5222 --users load --password-prefix pw \
//!     --count 500 --rate 100 --tls --mechanism scram-sha-256
//! starling-load hold  --users load --password-prefix pw --count 5000 --rate 500 \
//!     --duration 30 --server-pid 1234 --tls
//! starling-load chat  --users load --password-prefix pw --pairs 100 --rate 1000 \
//!     --duration 30 --tls --json
//! starling-load chat  --server 127.0.0.1:5222,127.0.0.1:5223,127.0.0.1:5224 --cross \
//!     --users load --password-prefix pw --pairs 300 --rate 10000 --tls
//! starling-load converge --server 127.0.0.1:5222,127.0.0.1:5223 --users load \
//!     --password-prefix pw --rounds 500 --rate 20 --tls
//! starling-load failover --server 127.0.0.1:5222,127.0.0.1:5223 --kill-pid 4321 \
//!     --users load --password-prefix pw --pairs 50 --tls
//! starling-load fanout --transport bayeux --server 127.0.0.1:5222 \
//!     --http 127.0.0.1:5280,127.0.0.1:5281,127.0.0.1:5282 --users load --password-prefix pw \
//!     --subscribers 10000 --rate 10 --duration 10 --tls
//! starling-load fanout --transport xmpp --server 127.0.0.1:5222,127.0.0.1:5223 \
//!     --users load --password-prefix pw --subscribers 1000 --rate 10 --tls
//! starling-load pep-storm --users load --password-prefix pw --count 2000 --rate 20 \
//!     --tls --server-pid 1234
//! starling-load muc --server 127.0.0.1:5222,127.0.0.1:5223,127.0.0.1:5224 --users load \
//!     --password-prefix pw --rooms 1 --occupants 1000 --rate 20 --duration 30 --tls \
//!     --server-pid 1201,1202,1203
//! starling-load hold --client-transport websocket --server 127.0.0.1:5280 --users load \
//!     --password-prefix pw --count 2000 --rate 200 --duration 10 --server-pid 1234
//! STARLING_BIN=target/release/starling starling-load faults --postgres postgres://starling:starling@127.0.0.1:5432/starling_test \
//!     --sessions 2000 --duration 600
//! starling-load prosody-users --data-dir /tmp/prosody/data --domain localhost \
//!     --users load --password-prefix pw --count 500 --roster-size 200
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use starling_tests::load::churn::Churn;
use starling_tests::load::fanout::{FanoutPlan, FanoutTransport};
use starling_tests::load::mam::MamPlan;
use starling_tests::load::muc::MucPlan;
use starling_tests::load::pep::PepStormPlan;
use starling_tests::load::prosody::ProsodyUsers;
use starling_tests::load::report::RunReport;
use starling_tests::load::report::latency_line;
use starling_tests::load::run::{Plan, Target, run};
use starling_tests::load::servers::Servers;
use starling_tests::load::{ClientTransport, Users, worker};
use starling_tests::sasl::{Mechanism, ScramHash};

#[derive(Parser)]
#[command(
    name = "starling-load",
    version,
    about = "Load driver for XMPP servers"
)]
struct Cli {
    /// Print the report as JSON on stdout instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log users in at a fixed rate; report logins/s and login latency.
    Login {
        #[command(flatten)]
        target: TargetArgs,
        /// Number of users.
        #[arg(long)]
        count: u64,
        /// Logins per second, in total.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Keep sessions connected; report the server's memory per session.
    Hold {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        count: u64,
        /// Logins per second, in total.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds to hold the sessions once all are up.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Server processes to sample (VmRSS) before the logins and once all are up: one
        /// per `--server` address, in the same order, comma-separated.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        /// Seconds to wait after the last login before sampling.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
        /// Do not send initial presence.
        #[arg(long)]
        no_presence: bool,
        /// Enable resumable stream management (XEP-0198) on every session.
        #[arg(long)]
        sm: bool,
    },
    /// Pairs exchange messages at a total rate; report throughput, latency and loss.
    Chat {
        #[command(flatten)]
        target: TargetArgs,
        /// Number of sender/receiver pairs (users PREFIX<first>.. two per pair).
        #[arg(long)]
        pairs: u64,
        /// Messages per second, in total.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Seconds to wait for messages in flight after sending stops.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Logins per second while setting up.
        #[arg(long, default_value_t = 200.0)]
        login_rate: f64,
        /// Pad message bodies to this many bytes.
        #[arg(long, default_value_t = 0)]
        body_size: usize,
        #[arg(long)]
        no_presence: bool,
        /// Put each pair's receiver on the server after its sender's (pair k: sender on
        /// server k mod n, receiver on (k+1) mod n), so every message crosses nodes.
        /// Without it both are on server k mod n.
        #[arg(long)]
        cross: bool,
        /// The servers' process ids, comma-separated in --server order: the report adds
        /// the CPU time each used from the start of sending to the end of the drain,
        /// and that time per message received.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        /// Enable resumable stream management (XEP-0198) on every session; the
        /// clients answer the server's ack requests.
        #[arg(long)]
        sm: bool,
        /// With --sm: this percentage of the receivers drop their socket (without
        /// closing the stream) in every --churn-every seconds and resume their
        /// session at once on a server picked at random; 0: none.
        #[arg(long, default_value_t = 0.0)]
        churn_percent: f64,
        #[arg(long, default_value_t = 60.0)]
        churn_every: f64,
    },
    /// Time from a fresh session's bind on one server to the arrival of a message sent to
    /// it from another server at that moment (the cluster directory's convergence).
    ///
    /// Users: PREFIX<first>.. are the senders (one per server), the next `--targets` users
    /// are logged in round after round, each time with a new resource.
    Converge {
        #[command(flatten)]
        target: TargetArgs,
        /// Number of rounds.
        #[arg(long, default_value_t = 200)]
        rounds: u64,
        /// Rounds started per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Target users to cycle through.
        #[arg(long, default_value_t = 50)]
        targets: u64,
        /// Seconds a round waits for its message before it counts as not delivered live.
        #[arg(long, default_value_t = 2.0)]
        wait: f64,
    },
    /// One session reads a conversation from its message archive (XEP-0313) as a
    /// client opening it does: the latest page, then pages further back; reports
    /// the time of each query.
    Mam {
        #[command(flatten)]
        target: TargetArgs,
        /// The contact whose conversation user PREFIX<first> reads (a bare JID).
        #[arg(long)]
        with: String,
        #[arg(long, default_value_t = 100)]
        rounds: u64,
        /// Pages read back after the latest, per round.
        #[arg(long, default_value_t = 10)]
        pages: u64,
        /// Messages per page.
        #[arg(long, default_value_t = 50)]
        max: u32,
    },
    /// Rooms of occupants spread over the servers, groupchat messages at a total rate;
    /// report deliveries/s, loss and latency from the scheduled send to each arrival.
    ///
    /// Users PREFIX<first>.. are the occupants, room r holding users r*M..r*M+M-1, user i
    /// on server i mod n. Each room's first occupant creates it as an instant room.
    Muc {
        #[command(flatten)]
        target: TargetArgs,
        /// Number of rooms.
        #[arg(long, default_value_t = 1)]
        rooms: u64,
        /// Occupants per room.
        #[arg(long, default_value_t = 10)]
        occupants: u64,
        /// The chat service.
        #[arg(long, default_value = "conference.localhost")]
        service: String,
        /// Messages per second over all rooms.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Seconds to wait for messages in flight after sending stops.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Server processes (every node) whose CPU time is read before sending and
        /// after the drain: reports CPU per delivery. Comma-separated.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// Kill the second server's process and time until watchers on the first server see
    /// their contacts on it go unavailable.
    ///
    /// Users PREFIX<first>, PREFIX<first+2>, ... watch from the first server; the users in
    /// between are their contacts on the second (provision with `--roster-size 2` and an
    /// odd `--first`).
    Failover {
        #[command(flatten)]
        target: TargetArgs,
        /// Watcher/contact pairs.
        #[arg(long, default_value_t = 10)]
        pairs: u64,
        /// Process id of the second server's node, killed with SIGKILL.
        #[arg(long)]
        kill_pid: u32,
        /// Logins per second while setting up.
        #[arg(long, default_value_t = 100.0)]
        login_rate: f64,
        /// Seconds between the last login and the kill, for presence to go round.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
        /// Seconds to wait after the kill for unavailable presence.
        #[arg(long, default_value_t = 30.0)]
        wait: f64,
    },
    /// Subscribers of one pub/sub node (Bayeux over WebSocket, or XMPP) and a publisher at a
    /// fixed rate; report deliveries/s, latency from publish to arrival, and loss.
    ///
    /// The publisher is user PREFIX<first> on the first `--server`; XMPP subscribers are the
    /// next `--subscribers` users; Bayeux subscribers are anonymous. Subscribers are spread
    /// round-robin over `--http` (Bayeux) or `--server` (XMPP).
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value_t = TransportArg::Bayeux)]
        transport: TransportArg,
        #[arg(long)]
        subscribers: u64,
        /// HTTP listeners of the nodes (IP:PORT, comma-separated), for Bayeux subscribers
        /// (`ws://IP:PORT/cometd`).
        #[arg(long, alias = "nodes")]
        http: Option<Servers>,
        /// The pub/sub node (channel `/pubsub/<node>`); default: a fresh one per run,
        /// deleted at the end.
        #[arg(long)]
        node: Option<String>,
        /// Items published per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds to wait for items in flight after publishing stops.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Subscribers connected per second while setting up.
        #[arg(long, default_value_t = 500.0)]
        connect_rate: f64,
        /// Server processes to sample (VmRSS), one per subscriber server in the same order.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        /// Seconds to wait after the last subscribe before sampling memory.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
    },
    /// The modern login storm: every user publishes an avatar (XEP-0084 metadata) and an
    /// OMEMO device list, then all log in at a fixed rate with capabilities that want both
    /// nodes; report the contact items each login gets, server CPU per login and memory
    /// per held session.
    ///
    /// Provision the users with rosters (`starling user provision --roster-size 200`, or
    /// `prosody-users --roster-size 200`). Exits with an error if a login whose contacts
    /// published got none of their items.
    PepStorm {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        count: u64,
        /// Logins per second during the storm, in total.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Logins per second while publishing (the setup).
        #[arg(long, default_value_t = 100.0)]
        publish_rate: f64,
        /// Skip the setup: every user's two items are already stored.
        #[arg(long)]
        no_publish: bool,
        /// Longest wait for a session's items after its presence, seconds.
        #[arg(long, default_value_t = 30.0)]
        wait: f64,
        /// A session that got nothing new for this long has all it will get, seconds.
        #[arg(long, default_value_t = 3.0)]
        quiet: f64,
        /// Seconds between the last session settling and the CPU and memory samples.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
        /// Server processes to sample (CPU and VmRSS): one per `--server` address, in the
        /// same order, comma-separated.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// Write SCRAM accounts straight into a Prosody data directory (bulk provisioning).
    ProsodyUsers {
        /// Prosody's data_path.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "localhost")]
        domain: String,
        #[arg(long, default_value = "user")]
        users: String,
        #[arg(long, default_value = "pass")]
        password_prefix: String,
        #[arg(long, default_value_t = 1)]
        first: u64,
        #[arg(long)]
        count: u64,
        /// Must match the host's `password_hash`.
        #[arg(long, value_enum, default_value_t = HashArg::Sha256)]
        hash: HashArg,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
        /// Contacts per user, subscription both: the same neighbours as
        /// `starling user provision --roster-size`.
        #[arg(long, default_value_t = 0)]
        roster_size: u64,
    },
    /// A fault campaign under load: starts three `starling` members in
    /// network namespaces sharing PostgreSQL (needs root, ip, nft, tc,
    /// psql), chats in pairs and injects every fault in turn until the
    /// duration is over; reports losses, duplicates, reordering, ghosts,
    /// presence and recovery per fault. Exits non-zero on a loss or ghost.
    /// The members run `$STARLING_BIN` (default: the workspace's debug
    /// build).
    Faults {
        /// The PostgreSQL database (the campaign uses a schema of its own).
        #[arg(long, env = "STARLING_TEST_POSTGRES_URL")]
        postgres: String,
        #[arg(long, default_value_t = 2000)]
        sessions: usize,
        /// Each session sends one message this often, seconds.
        #[arg(long, default_value_t = 4.0)]
        interval: f64,
        /// Keep injecting faults until this many seconds have passed (at
        /// least one round).
        #[arg(long, default_value_t = 600.0)]
        duration: f64,
        /// 1: 20 s partitions and a minute of loss and latency; smaller
        /// shortens them.
        #[arg(long, default_value_t = 1.0)]
        fault_scale: f64,
        /// The store relay's port on this side of the namespaces' bridge.
        #[arg(long, default_value_t = 0)]
        relay_port: u16,
        #[arg(long, default_value_t = 200.0)]
        login_rate: f64,
        /// Only these faults (comma-separated names; default all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Copy the members' logs and the list of lost messages here, and
        /// keep the store's schema (named in DIR/store.txt).
        #[arg(long)]
        logs: Option<PathBuf>,
    },
    /// Internal: run one worker's share of a run (job on stdin, report on stdout).
    #[command(hide = true)]
    Worker,
}

#[derive(Args)]
struct TargetArgs {
    /// Server c2s address, or several comma-separated (the nodes of a cluster): users are
    /// spread over them round-robin.
    #[arg(long, default_value = "127.0.0.1:5222")]
    server: Servers,
    /// The users' domain; or one per server, comma-separated in --server
    /// order, when the servers are different ones federating with each other
    /// (users logging in on server i are on domain i).
    #[arg(long, default_value = "localhost", value_delimiter = ',')]
    domain: Vec<String>,
    /// User name prefix: users are PREFIX<first>, PREFIX<first+1>, ...
    #[arg(long, default_value = "user")]
    users: String,
    /// Password prefix: user PREFIX<i> has password W<i>.
    #[arg(long, default_value = "pass")]
    password_prefix: String,
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Negotiate STARTTLS (required).
    #[arg(long)]
    tls: bool,
    #[arg(long, value_enum, default_value_t = MechanismArg::ScramSha256)]
    mechanism: MechanismArg,
    #[arg(long, default_value = "load")]
    resource: String,
    /// Seconds allowed for each negotiation step.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Worker processes (default: one per 19,900 sockets).
    #[arg(long)]
    workers: Option<usize>,
    /// Source address of the first worker; worker k uses this plus k.
    #[arg(long, default_value = "127.0.0.2")]
    source_base: IpAddr,
    /// Let the system choose source addresses (e.g. for a non-loopback server).
    #[arg(long)]
    no_bind: bool,
    /// What the clients speak: `websocket` (RFC 7395 at /xmpp-websocket) and
    /// `bosh` (XEP-0206 at /http-bind) take the servers' HTTP addresses in
    /// --server, with --tls meaning wss:// and https://.
    #[arg(long, value_enum, default_value_t = ClientTransportArg::Tcp)]
    client_transport: ClientTransportArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClientTransportArg {
    Tcp,
    #[value(name = "websocket")]
    WebSocket,
    Bosh,
}

#[derive(Clone, Copy, ValueEnum)]
enum MechanismArg {
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-1")]
    ScramSha1,
    Plain,
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Bayeux,
    Xmpp,
}

#[derive(Clone, Copy, ValueEnum)]
enum HashArg {
    #[value(name = "sha-256")]
    Sha256,
    #[value(name = "sha-1")]
    Sha1,
}

impl TargetArgs {
    fn into_target(self) -> Result<Target, String> {
        let server_domains = match self.domain.len() {
            1 => Vec::new(),
            count if count == self.server.len() => self.domain.clone(),
            count => {
                return Err(format!(
                    "--domain names {count} domains for {} servers: give one, or one per server",
                    self.server.len()
                ));
            }
        };
        Ok(Target {
            servers: self.server,
            domain: self.domain[0].clone(),
            server_domains,
            users: Users {
                prefix: self.users,
                password_prefix: self.password_prefix,
                first: self.first,
                count: 0,
            },
            tls: self.tls,
            mechanism: match self.mechanism {
                MechanismArg::ScramSha256 => Mechanism::ScramSha256,
                MechanismArg::ScramSha1 => Mechanism::ScramSha1,
                MechanismArg::Plain => Mechanism::Plain,
            },
            resource: self.resource,
            timeout_s: self.timeout,
            workers: self.workers,
            source_base: (!self.no_bind).then_some(self.source_base),
            transport: match self.client_transport {
                ClientTransportArg::Tcp => ClientTransport::Tcp,
                ClientTransportArg::WebSocket => ClientTransport::WebSocket,
                ClientTransportArg::Bosh => ClientTransport::Bosh,
            },
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match main_with(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("starling-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_with(cli: Cli) -> anyhow::Result<()> {
    // Every socket is a file descriptor; take all the system allows.
    rlimit::increase_nofile_limit(u64::MAX).context("raising the open-file limit")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (target, plan) = match cli.command {
        Command::Worker => {
            return runtime.block_on(worker::worker_main()).context("worker");
        }
        Command::Faults {
            postgres,
            sessions,
            interval,
            duration,
            fault_scale,
            relay_port,
            login_rate,
            only,
            logs,
        } => {
            starling_tests::faults::available(Some(&postgres)).map_err(anyhow::Error::msg)?;
            let config = starling_tests::faults::CampaignConfig {
                sessions,
                interval: std::time::Duration::from_secs_f64(interval),
                duration: std::time::Duration::from_secs_f64(duration),
                fault_scale,
                recovery_limit: std::time::Duration::from_secs(60),
                postgres_url: postgres,
                relay_port,
                login_rate,
                only,
                logs,
            };
            let report = runtime
                .block_on(starling_tests::faults::run(config))
                .map_err(anyhow::Error::msg)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            let (lost, ghosts) = report.losses_and_ghosts();
            anyhow::ensure!(
                lost == 0 && ghosts == 0,
                "{lost} messages lost, {ghosts} ghost sessions"
            );
            return Ok(());
        }
        Command::ProsodyUsers {
            data_dir,
            domain,
            users,
            password_prefix,
            first,
            count,
            hash,
            iterations,
            roster_size,
        } => {
            let job = ProsodyUsers {
                data_dir,
                domain,
                users: Users {
                    prefix: users,
                    password_prefix,
                    first,
                    count,
                },
                hash: match hash {
                    HashArg::Sha256 => ScramHash::Sha256,
                    HashArg::Sha1 => ScramHash::Sha1,
                },
                iterations,
                roster_size,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            let start = std::time::Instant::now();
            let written = job.write().context("writing Prosody accounts")?;
            eprintln!(
                "starling-load: wrote {written} Prosody accounts in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Command::PepStorm {
            target,
            count,
            rate,
            publish_rate,
            no_publish,
            wait,
            quiet,
            settle,
            server_pid,
        } => {
            let plan = PepStormPlan {
                count,
                rate,
                publish: !no_publish,
                publish_rate,
                wait_s: wait,
                quiet_s: quiet,
                settle_s: settle,
                server_pids: server_pid,
            };
            let target = target.into_target().map_err(anyhow::Error::msg)?;
            let report = runtime.block_on(starling_tests::load::pep::run(&target, &plan))?;
            print_report(&report, cli.json)?;
            return match report.pep_storm {
                Some(storm) if storm.empty > 0 => Err(anyhow::anyhow!(
                    "{} login(s) got none of their contacts' PEP items",
                    storm.empty
                )),
                _ => Ok(()),
            };
        }
        Command::Mam {
            target,
            with,
            rounds,
            pages,
            max,
        } => {
            let target = target.into_target().map_err(anyhow::Error::msg)?;
            let plan = MamPlan {
                username: target.users.username(0),
                password: target.users.password(0),
                with,
                rounds,
                pages,
                max,
                timeout_s: target.timeout_s,
            };
            let connection = starling_tests::load::run::connection(&target, None);
            let summary = runtime.block_on(starling_tests::load::mam::run(&connection, &plan))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "mam: {} rounds with {}, {} messages: latest page {}; each page back {}",
                    summary.rounds,
                    summary.with,
                    summary.messages,
                    latency_line(&summary.latest),
                    latency_line(&summary.page_back)
                );
            }
            return Ok(());
        }
        Command::Muc {
            target,
            rooms,
            occupants,
            service,
            rate,
            duration,
            drain,
            server_pid,
        } => {
            let plan = MucPlan {
                rooms,
                occupants,
                service,
                rate,
                duration_s: duration,
                drain_s: drain,
                server_pids: server_pid,
            };
            let report = runtime.block_on(starling_tests::load::muc::run(
                &target.into_target().map_err(anyhow::Error::msg)?,
                &plan,
            ))?;
            print_report(&report, cli.json)?;
            return match &report.muc {
                Some(muc) if muc.joined == 0 => Err(anyhow::anyhow!("no occupant joined")),
                _ => Ok(()),
            };
        }
        Command::Login {
            target,
            count,
            rate,
        } => (target, Plan::Login { count, rate }),
        Command::Hold {
            target,
            count,
            rate,
            duration,
            server_pid,
            settle,
            no_presence,
            sm,
        } => (
            target,
            Plan::Hold {
                count,
                rate,
                duration_s: duration,
                presence: !no_presence,
                stream_management: sm,
                server_pids: server_pid,
                settle_s: settle,
            },
        ),
        Command::Chat {
            target,
            pairs,
            rate,
            duration,
            drain,
            login_rate,
            body_size,
            no_presence,
            cross,
            server_pid,
            sm,
            churn_percent,
            churn_every,
        } => (
            target,
            Plan::Chat {
                pairs,
                rate,
                duration_s: duration,
                drain_s: drain,
                login_rate,
                body_size,
                presence: !no_presence,
                cross,
                server_pids: server_pid,
                stream_management: sm,
                churn: (churn_percent > 0.0).then_some(Churn {
                    fraction: churn_percent / 100.0,
                    every_s: churn_every,
                }),
            },
        ),
        Command::Converge {
            target,
            rounds,
            rate,
            targets,
            wait,
        } => (
            target,
            Plan::Converge {
                rounds,
                rate,
                targets,
                wait_s: wait,
            },
        ),
        Command::Failover {
            target,
            pairs,
            kill_pid,
            login_rate,
            settle,
            wait,
        } => (
            target,
            Plan::Failover {
                pairs,
                kill_pid,
                login_rate,
                settle_s: settle,
                wait_s: wait,
            },
        ),
        Command::Fanout {
            target,
            transport,
            subscribers,
            http,
            node,
            rate,
            duration,
            drain,
            connect_rate,
            server_pid,
            settle,
        } => {
            let run = fresh_token();
            (
                target,
                Plan::Fanout(FanoutPlan {
                    transport: match transport {
                        TransportArg::Bayeux => FanoutTransport::Bayeux,
                        TransportArg::Xmpp => FanoutTransport::Xmpp,
                    },
                    subscribers,
                    http,
                    node: node.unwrap_or_else(|| format!("load-fanout-{run:x}")),
                    run,
                    rate,
                    duration_s: duration,
                    drain_s: drain,
                    connect_rate,
                    server_pids: server_pid,
                    settle_s: settle,
                }),
            )
        }
    };
    let target = target.into_target().map_err(anyhow::Error::msg)?;
    let report = runtime.block_on(run(&target, &plan))?;
    print_report(&report, cli.json)
}

fn print_report(report: &RunReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

/// A token that tells this run's items from any earlier run's.
fn fresh_token() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Microseconds since 1970 fit in 53 bits, so the token survives JSON as a number.
    u64::try_from(now.as_micros()).unwrap_or(0) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("starling-load").chain(args.iter().copied()))
    }

    #[test]
    fn one_server_stays_the_default_and_lists_are_accepted() {
        let Command::Login { target, .. } = parse(&["login", "--count", "5"]).unwrap().command
        else {
            panic!("not login")
        };
        assert_eq!(target.server.to_string(), "127.0.0.1:5222");
        let cli = parse(&[
            "hold",
            "--count",
            "6",
            "--server",
            "127.0.0.1:5222,127.0.0.1:5223",
            "--server-pid",
            "11,12",
        ])
        .unwrap();
        let Command::Hold {
            target, server_pid, ..
        } = cli.command
        else {
            panic!("not hold")
        };
        assert_eq!(target.server.len(), 2);
        assert_eq!(server_pid, vec![11, 12]);
        assert!(parse(&["login", "--count", "5", "--server", "127.0.0.1:5222,"]).is_err());
    }

    #[test]
    fn chat_is_same_node_unless_cross_is_given() {
        let chat = |extra: &[&str]| {
            let mut args = vec!["chat", "--pairs", "4"];
            args.extend_from_slice(extra);
            match parse(&args).unwrap().command {
                Command::Chat { cross, .. } => cross,
                _ => panic!("not chat"),
            }
        };
        assert!(!chat(&[]));
        assert!(chat(&["--cross"]));
    }

    #[test]
    fn pep_storm_publishes_unless_told_not_to() {
        let cli = parse(&["pep-storm", "--count", "40", "--server-pid", "9"]).unwrap();
        let Command::PepStorm {
            count,
            rate,
            no_publish,
            server_pid,
            ..
        } = cli.command
        else {
            panic!("not pep-storm")
        };
        assert_eq!(
            (count, rate, no_publish, server_pid),
            (40, 20.0, false, vec![9])
        );
        let cli = parse(&["pep-storm", "--count", "40", "--no-publish"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::PepStorm {
                no_publish: true,
                ..
            }
        ));
        assert!(parse(&["pep-storm"]).is_err(), "--count is required");
    }

    #[test]
    fn muc_reads_server_cpu_only_when_given_pids() {
        let Command::Muc { server_pid, .. } = parse(&["muc"]).unwrap().command else {
            panic!("not muc")
        };
        assert!(server_pid.is_empty());
        let cli = parse(&["muc", "--rooms", "2", "--server-pid", "3,4,5"]).unwrap();
        let Command::Muc {
            rooms, server_pid, ..
        } = cli.command
        else {
            panic!("not muc")
        };
        assert_eq!((rooms, server_pid), (2, vec![3, 4, 5]));
    }

    #[test]
    fn converge_and_failover_parse() {
        let cli = parse(&[
            "converge",
            "--server",
            "127.0.0.1:1,127.0.0.1:2",
            "--rounds",
            "30",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Converge {
                rounds: 30,
                targets: 50,
                ..
            }
        ));
        assert!(parse(&["failover", "--server", "127.0.0.1:1,127.0.0.1:2"]).is_err());
        let cli = parse(&["failover", "--kill-pid", "7", "--pairs", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Failover {
                kill_pid: 7,
                pairs: 3,
                ..
            }
        ));
    }
}
