//! The `cartstream` command line: parse, load configuration (exit 64 when invalid), start
//! telemetry, run the role, turn the outcome into an exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use cartstream::app::{self, Roles};
use cartstream::clock::Clock;
use cartstream::config::{self, Config, Problems};
use cartstream::tenants::{self, Registry};
use cartstream::{providers, telemetry};

/// Rust's allocations go to mimalloc: the roles allocate and free small buffers per request, per
/// record and per delivery, where it spends a fraction of the system allocator's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for invalid configuration (EX_USAGE... EX_DATAERR family: sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "cartstream",
    version,
    about = "Stream processor for commerce webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process: ingress, processor, delivery (the single-machine
    /// default).
    All {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Receive webhooks, verify them and produce them to Kafka.
    Ingress {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Consume the inbound topic: normalize, de-duplicate, track carts and their timers, and
    /// publish events and cart transitions.
    Processor {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Consume cart transitions and deliver them as signed webhooks to the tenants' endpoints,
    /// with durable retries; record every outcome.
    Delivery {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and the tenant registry; print every problem found.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the secrets platforms sent in their payloads (ShopiMind's access tokens), opened
    /// with `ingress.credentials_key`: one JSON line per tenant, installation and field, the
    /// latest value of each.
    Credentials {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this tenant's.
        #[arg(long, conflicts_with = "unclaimed")]
        tenant: Option<String>,
        /// Only what installations no tenant has claimed yet sent (ShopiMind installs accepted
        /// with `ingress.shopimind_app_secret`).
        #[arg(long)]
        unclaimed: bool,
        /// Print the secrets even when the output is a terminal, where they stay on the screen
        /// and in its scrollback (into a pipe or a file they are printed without it).
        #[arg(long)]
        reveal: bool,
    },
    /// The tenant registry on the tenants topic (`<prefix>.tenants.v1`).
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Print the signature header value a platform would send for a body (for testing).
    Sign {
        /// The provider whose scheme to use.
        #[arg(long, value_enum)]
        provider: SignProvider,
        /// The secret as configured in tenants.toml.
        #[arg(long, env = "CARTSTREAM_SIGN_SECRET")]
        secret: String,
        /// Standard Webhooks: the webhook-id header value.
        #[arg(long, default_value = "msg_cartstream_sign")]
        id: String,
        /// Standard Webhooks: the webhook-timestamp header value (default: now).
        #[arg(long)]
        timestamp: Option<u64>,
        /// The file holding the exact body bytes to send.
        body_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Make the tenants topic say what a registry file says: print the records to create,
    /// update and delete (by name, with the fields that change, never a secret), then write
    /// them, secrets sealed with `tenants.sealing_key`. Applying the same file again changes
    /// nothing.
    Apply {
        /// The registry file (the format of tenants.toml).
        file: PathBuf,
        /// Print the changes only: nothing is written, and no topic is created.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Seal every secret on the tenants topic under `tenants.sealing_key`: each record holding a
    /// secret sealed under one of `tenants.previous_sealing_keys` is written again, its
    /// secrets opened and sealed anew. Once it prints `no changes`, the previous keys can go.
    Rekey {
        /// Print the records to seal again only: nothing is written.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SignProvider {
    Shopify,
    Salla,
    Standard,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::All { config } => run(config.as_deref(), Roles::ALL),
        Command::Ingress { config } => run(config.as_deref(), Roles::INGRESS),
        Command::Processor { config } => run(config.as_deref(), Roles::PROCESSOR),
        Command::Delivery { config } => run(config.as_deref(), Roles::DELIVERY),
        Command::CheckConfig { config } => match load(config.as_deref()) {
            Ok((config, app::Tenants::Topic)) => {
                println!(
                    "configuration ok: tenants from the topic {}, read at start; brokers {}",
                    config.kafka.topics().tenants,
                    config.kafka.brokers
                );
                ExitCode::SUCCESS
            }
            Ok((config, app::Tenants::Loaded(registry))) => {
                for warning in registry.warnings() {
                    println!("warning: {warning}");
                }
                println!(
                    "configuration ok: {} tenants, {} integrations, brokers {}",
                    registry.tenants().len(),
                    registry.integrations().len(),
                    config.kafka.brokers
                );
                ExitCode::SUCCESS
            }
            Err(problems) => report(&problems),
        },
        Command::Credentials {
            config,
            tenant,
            unclaimed,
            reveal,
        } => {
            if !may_print_secrets(std::io::stdout().is_terminal(), reveal) {
                eprintln!(
                    "the output is a terminal: the secrets are printed only into a pipe or a file (`cartstream credentials … > file`), or with --reveal"
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            let tenant = match unclaimed {
                true => Some(cartstream::tenants::UNCLAIMED.to_string()),
                false => tenant,
            };
            credentials(config.as_deref(), tenant)
        }
        Command::Tenants {
            command:
                TenantsCommand::Apply {
                    file,
                    dry_run,
                    config,
                },
        } => tenants_apply(config.as_deref(), Some(&file), dry_run),
        Command::Tenants {
            command: TenantsCommand::Rekey { dry_run, config },
        } => tenants_apply(config.as_deref(), None, dry_run),
        Command::Sign {
            provider,
            secret,
            id,
            timestamp,
            body_file,
        } => match std::fs::read(&body_file) {
            Ok(body) => sign(provider, &secret, &id, timestamp, &body),
            Err(e) => {
                eprintln!("cannot read {}: {e}", body_file.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `roles` until a signal (or a failure) stops them.
fn run(config: Option<&std::path::Path>, roles: Roles) -> ExitCode {
    let (config, registry) = match load(config) {
        Ok(loaded) => loaded,
        Err(problems) => return report(&problems),
    };
    telemetry::init_logs(&config.telemetry);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let running = app::start(config, registry, Clock::System, roles).await?;
        app::run_until_signal(running).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "cartstream stopped with an error"
            );
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `cartstream credentials` may print the secrets it opens: into a pipe or a file, yes;
/// onto a terminal — where they stay on the screen, in its scrollback and in screen recordings —
/// only when asked for with `--reveal`.
fn may_print_secrets(stdout_is_terminal: bool, reveal: bool) -> bool {
    !stdout_is_terminal || reveal
}

/// `cartstream credentials`: reads the credentials topic and prints what the key opens.
fn credentials(file: Option<&std::path::Path>, tenant: Option<String>) -> ExitCode {
    let (config, problems) = Config::load_lenient(file, &config::process_env());
    if !problems.is_empty() {
        return report(&problems);
    }
    let Some(vault) = config.ingress.vault() else {
        eprintln!("ingress.credentials_key is not set: nothing can be opened");
        return ExitCode::from(EXIT_CONFIG);
    };
    let (latest, unreadable) =
        match cartstream::kafka::credentials::read_latest(&config.kafka, Duration::from_secs(60)) {
            Ok(read) => read,
            Err(e) => {
                eprintln!("reading {}: {e}", config.kafka.topics().credentials);
                return ExitCode::FAILURE;
            }
        };
    let mut failed = unreadable;
    for (key, record) in latest {
        if tenant.as_ref().is_some_and(|t| *t != record.tenant) {
            continue;
        }
        let value = vault
            .open_record(key.as_bytes(), &record)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                // As sent, byte for byte: a number is not re-printed through f64.
                String::from_utf8(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        serde_json::value::RawValue::from_string(text).map_err(|e| e.to_string())
                    })
            });
        match value {
            Ok(value) => println!(
                "{}",
                serde_json::json!({
                    "tenant": record.tenant,
                    "provider": record.provider,
                    "installation": record.installation,
                    "field": record.field,
                    "event_type": record.event_type,
                    "received_at": record.received_at,
                    "value": value,
                })
            ),
            Err(why) => {
                eprintln!("{key}: {why}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} records could not be opened or read");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `cartstream tenants apply` (with `file`) and `rekey` (without): reads the tenants topic to
/// its end, plans what makes it say what `file` says, or what seals every secret under the
/// current key, prints the plan and, unless `dry_run`, writes it.
fn tenants_apply(
    config: Option<&std::path::Path>,
    file: Option<&std::path::Path>,
    dry_run: bool,
) -> ExitCode {
    use cartstream::kafka::registry;
    use cartstream::tenants::{self, Records};

    let env = config::process_env();
    let (config, problems) = Config::load_lenient(config, &env);
    if !problems.is_empty() {
        return report(&problems);
    }
    let Some(keys) = config.tenants.keyring() else {
        eprintln!("tenants.sealing_key is not set: the registry's secrets are sealed with it");
        return ExitCode::from(EXIT_CONFIG);
    };
    let desired = match file.map(|file| Records::load(file, &env, keys.current())) {
        Some(Ok(records)) => Some(records),
        Some(Err(problems)) => return report(&problems),
        None => None,
    };
    let topic = config.kafka.topics().tenants;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !dry_run {
        if let Err(e) = runtime.block_on(registry::ensure_topic(&config.kafka)) {
            eprintln!("creating {topic}: {:#}", anyhow::Error::from(e));
            return ExitCode::FAILURE;
        }
    }
    let mut reading = tenants::Reading::default();
    let read = registry::read(&config.kafka, Duration::from_secs(60), |key, value| {
        reading.apply(key, value)
    });
    if let Err(e) = read {
        eprintln!("reading {topic}: {:#}", anyhow::Error::from(e));
        return ExitCode::FAILURE;
    }
    if reading.unreadable().len() > 0 {
        for problem in reading.unreadable() {
            eprintln!("{topic}: {problem}");
        }
        eprintln!(
            "{topic} holds {} records that are not registry records: nothing applied",
            reading.unreadable().len()
        );
        return ExitCode::FAILURE;
    }
    let current = reading.records();
    let plan = match &desired {
        Some(desired) => tenants::plan(current, desired, &keys),
        None => current.rekey(&keys),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(problems) => return report(&problems),
    };
    println!("{plan}");
    if dry_run {
        println!("dry run: nothing written to {topic}");
        return ExitCode::SUCCESS;
    }
    if plan.is_empty() {
        return ExitCode::SUCCESS;
    }
    match runtime.block_on(registry::write(&config.kafka, plan.messages())) {
        Ok(written) => {
            println!("applied: {written} records written to {topic}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "writing {topic}: {:#}; apply the file again to finish",
                anyhow::Error::from(e)
            );
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration and the registry it names, collecting the problems of both. With
/// `tenants.source = "topic"` the registry is read at start, from the topic.
fn load(file: Option<&std::path::Path>) -> Result<(Config, app::Tenants), Problems> {
    let env = config::process_env();
    let (config, mut problems) = Config::load_lenient(file, &env);
    if config.tenants.source == tenants::Source::Topic {
        return problems.into_result((config, app::Tenants::Topic));
    }
    match Registry::load(&config.tenants.file, &env) {
        Ok(registry) => {
            config.delivery.check_endpoints(&registry, &mut problems);
            config.ingress.check_credentials(&registry, &mut problems);
            cartstream::platforms::check_apps(&config.platforms.apps(), &registry, &mut problems);
            problems.into_result((config, registry.into()))
        }
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

fn report(problems: &Problems) -> ExitCode {
    eprintln!("invalid configuration ({} problems):", problems.len());
    for problem in problems.iter() {
        eprintln!("  - {problem}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn sign(
    provider: SignProvider,
    secret: &str,
    id: &str,
    timestamp: Option<u64>,
    body: &[u8],
) -> ExitCode {
    let value = match provider {
        SignProvider::Shopify => providers::shopify::sign(secret.as_bytes(), body),
        SignProvider::Salla => providers::salla::sign(secret.as_bytes(), body),
        SignProvider::Standard => {
            let key = match providers::Provider::key(&providers::standard::Standard, secret) {
                Ok(key) => key,
                Err(e) => {
                    eprintln!("invalid secret: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let timestamp = timestamp.unwrap_or_else(|| (Clock::System.now_millis() / 1000) as u64);
            providers::standard::sign(&key, id, timestamp, body)
        }
    };
    println!("{value}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_printed_onto_a_terminal_only_when_revealed() {
        assert!(may_print_secrets(false, false), "into a pipe or a file");
        assert!(may_print_secrets(false, true));
        assert!(
            !may_print_secrets(true, false),
            "onto a terminal, not unasked"
        );
        assert!(may_print_secrets(true, true));
    }

    #[test]
    fn the_tenants_apply_command_takes_a_file_and_a_dry_run() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
            Ok(Command::Tenants {
                command:
                    TenantsCommand::Apply {
                        file,
                        dry_run,
                        config,
                    },
            }) => (file, dry_run, config),
            _ => panic!("{args:?} is not a tenants apply command"),
        };
        assert_eq!(
            parse(&[
                "cartstream",
                "tenants",
                "apply",
                "t.toml",
                "--config",
                "c.toml"
            ]),
            (
                PathBuf::from("t.toml"),
                false,
                Some(PathBuf::from("c.toml"))
            )
        );
        assert!(parse(&["cartstream", "tenants", "apply", "--dry-run", "t.toml"]).1);
        assert!(Cli::try_parse_from(["cartstream", "tenants", "apply"]).is_err());
    }

    #[test]
    fn the_credentials_command_takes_reveal() {
        let reveal = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
            Ok(Command::Credentials { reveal, .. }) => reveal,
            _ => panic!("{args:?} is not a credentials command"),
        };
        assert!(!reveal(&["cartstream", "credentials"]));
        assert!(reveal(&["cartstream", "credentials", "--reveal"]));
        assert!(reveal(&[
            "cartstream",
            "credentials",
            "--tenant",
            "acme",
            "--reveal"
        ]));
    }
}
