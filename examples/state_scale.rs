//! Measures the processor's RocksDB state store (`cartstream::state`) at scale, on one partition:
//!
//! 1. **Load**: N checkout deliveries, each for a distinct cart (random-looking cart and checkout
//!    tokens, spread over ~100 tenants, with a customer name, e-mail and phone, a cart value,
//!    currency, item count and recovery URL), all `abandoned_candidate`, so each arms an
//!    inactivity timer; staged and written 1,000 at a time, as the processor writes a polled
//!    batch. Reports seconds and events/s.
//! 2. **Disk**: the bytes under the store directory right after loading (SST files plus the
//!    write-ahead log), then after closing and reopening the store — RocksDB replays the log into
//!    SST files on open, so that is the flushed size — as bytes per cart and GB (10^9 bytes) per
//!    million carts. Again after firing. The table files of each column family after reopening,
//!    per cart, go to stderr.
//! 3. **Memory**: the process's resident set (`VmRSS`) and its peak (`VmHWM`) from
//!    `/proc/self/status` before and after loading, as MiB per million carts — overall, and over
//!    the second half of the load alone: memtables and block cache are a bounded cost that fills
//!    early, so the second half shows what each further cart costs.
//! 4. **Fire**: with the clock past every deadline, `fire_due(now, batch)` in a loop until it
//!    returns nothing; every cart must come out exactly once as `active → abandoned` (the tool
//!    exits non-zero otherwise). Reports seconds and timers/s.
//!
//! The outbox is drained as the processor would drain it — `outbox(limit)` then
//! `acknowledge(&sequences)` — after every 10,000 applies and after every fire batch, and that
//! time is part of both timings (it is also reported on its own). Event construction is cheap and
//! included too (also reported on its own). Rates over the first and the last tenth of each phase
//! show whether it slows down as the store grows; stderr has the rate and RSS every tenth.
//!
//! ```text
//! cargo run --release --example state_scale -- --carts 1000000
//! cargo run --release --example state_scale -- --carts 100000 --dir /var/tmp/state-scale
//! ```
//!
//! Flags: `--carts N` (default 1,000,000), `--tenants N` (default 100), `--batch N` timers per
//! `fire_due` call (default 10,000), `--dir PATH` an empty or missing directory to keep the store
//! in (default: a temporary directory, deleted at exit). Progress goes to stderr; the report, then
//! a one-line JSON summary, to stdout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use cartstream::state::{Input, Phase, Store, Windows};
use cartstream::topics::event::{Bucket, Customer, Event};

const USAGE: &str =
    "usage: state_scale [--carts N] [--tenants N] [--batch N] [--dir PATH]  (N may use _ separators)";

/// Event time of the first delivery (2023-11-14T22:13:20Z).
const T0: i64 = 1_700_000_000_000;
/// The deliveries' event times are spread evenly over one day.
const SPAN_MS: i64 = 24 * 3600 * 1000;
const MINUTE_MS: i64 = 60_000;
/// Tenants' inactivity windows, assigned round-robin.
const WINDOWS_MIN: [i64; 5] = [15, 30, 60, 120, 240];
/// Drain the outbox after this many applies.
const DRAIN_EVERY: u64 = 10_000;
/// Deliveries staged per commit, as the processor writes a polled batch
/// (`processor.max_batch_records`' default).
const COMMIT_EVERY: u64 = 1_000;
/// Records per `outbox()` read.
const DRAIN_LIMIT: usize = 10_000;
/// Progress lines per phase.
const PROGRESS_STEPS: u64 = 10;

const FIRST_NAMES: [&str; 16] = [
    "Bob", "Alice", "Omar", "Fatima", "Chen", "Maria", "Yusuf", "Sara", "Liam", "Noor", "Ahmed",
    "Emma", "Khalid", "Lea", "Ivan", "Aisha",
];
const LAST_NAMES: [&str; 16] = [
    "Norman", "Haddad", "Schmidt", "Garcia", "Al-Harbi", "Tanaka", "Okafor", "Rossi", "Kowalski",
    "Nguyen", "Silva", "Dubois", "Hassan", "Larsen", "Petrov", "Murphy",
];
const MAIL_DOMAINS: [&str; 5] = [
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "example.com",
];
const CURRENCIES: [&str; 5] = ["USD", "EUR", "GBP", "SAR", "AED"];

struct Args {
    carts: u64,
    tenants: u64,
    batch: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        carts: 1_000_000,
        tenants: 100,
        batch: 10_000,
        dir: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), value.to_string()),
            None => {
                let value = argv
                    .next()
                    .with_context(|| format!("{arg} needs a value\n{USAGE}"))?;
                (arg, value)
            }
        };
        let count = || -> anyhow::Result<u64> {
            let n: u64 = value
                .replace('_', "")
                .parse()
                .with_context(|| format!("{flag} {value}: not a count"))?;
            ensure!(n > 0, "{flag} must be at least 1");
            Ok(n)
        };
        match flag.as_str() {
            "--carts" => args.carts = count()?,
            "--tenants" => args.tenants = count()?,
            "--batch" => args.batch = count()? as usize,
            "--dir" => args.dir = Some(PathBuf::from(&value)),
            _ => bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    Ok(args)
}

// The library takes time only through its clock; a measuring tool reads the monotonic clock
// directly.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// splitmix64: a cheap, deterministic source of realistic-looking ids and values.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One synthetic delivery: cart `i` of `n`.
struct Delivery {
    tenant: usize,
    delivery_id: String,
    event: Event,
    at_ms: i64,
    window_ms: i64,
}

fn delivery(i: u64, n: u64, tenants: &[String]) -> Delivery {
    let h = [mix(i), mix(i ^ 0x5555_5555), mix(i ^ 0xaaaa_aaaa), mix(!i)];
    let tenant = (h[0] % tenants.len() as u64) as usize;
    let at_ms = T0 + (i as i128 * SPAN_MS as i128 / n as i128) as i64;
    let window_ms = WINDOWS_MIN[tenant % WINDOWS_MIN.len()] * MINUTE_MS;
    // Shopify-like: 32 hex digits of cart token, a UUID webhook id.
    let token = format!("{:016x}{:016x}", h[1], h[2]);
    let delivery_id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h[3] >> 32,
        (h[3] >> 16) & 0xffff,
        h[3] & 0xfff,
        (h[0] >> 20) & 0xfff,
        h[2] >> 16,
    );
    let first = FIRST_NAMES[(h[1] % 16) as usize];
    let last = LAST_NAMES[((h[1] >> 8) % 16) as usize];
    let domain = MAIL_DOMAINS[((h[1] >> 16) % 5) as usize];

    let provider_event = if h[0] & 1 == 0 {
        "checkouts/create"
    } else {
        "checkouts/update"
    };
    let mut event = Event::new("shopify", Some(provider_event), Bucket::AbandonedCandidate);
    event.resource_type = Some("checkout".into());
    event.resource_id = Some(format!("{}", 30_000_000_000 + i));
    event.checkout_token = Some(format!("{:016x}{:016x}", h[2], h[3]));
    event.customer = Customer {
        name: Some(format!("{first} {last}")),
        email: Some(format!(
            "{}.{}{}@{domain}",
            first.to_lowercase(),
            last.to_lowercase(),
            i
        )),
        phone: Some(format!("+1{:010}", 2_000_000_000 + (h[3] % 8_000_000_000))),
    };
    let cents = 500 + h[2] % 100_000;
    event.cart_value = Some(format!("{}.{:02}", cents / 100, cents % 100));
    event.currency = Some(CURRENCIES[(h[3] >> 40) as usize % CURRENCIES.len()].into());
    event.item_count = Some(1 + (h[1] >> 24) % 8);
    event.recovery_url = Some(format!(
        "https://{}.myshopify.com/{}/checkouts/{}/recover?key={:016x}",
        tenants[tenant],
        60_000_000 + tenant,
        token,
        h[0]
    ));
    event.occurred_at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    event.cart_token = Some(token);
    Delivery {
        tenant,
        delivery_id,
        event,
        at_ms,
        window_ms,
    }
}

/// Reads and acknowledges everything in the outbox; returns how many records it held.
fn drain(store: &mut Store) -> anyhow::Result<u64> {
    let mut drained = 0;
    loop {
        let records = store.outbox(DRAIN_LIMIT)?;
        if records.is_empty() {
            return Ok(drained);
        }
        drained += records.len() as u64;
        let sequences: Vec<u64> = records.iter().map(|(sequence, _)| *sequence).collect();
        store.acknowledge(&sequences)?;
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Disk {
    total: u64,
    sst: u64,
    wal: u64,
}

/// Sums the sizes of the files under `dir`: all, SST files, write-ahead logs (`*.log`).
fn disk(dir: &Path) -> anyhow::Result<Disk> {
    let mut sizes = Disk::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
                continue;
            }
            sizes.total += meta.len();
            match entry.path().extension().and_then(|e| e.to_str()) {
                Some("sst") => sizes.sst += meta.len(),
                Some("log") => sizes.wal += meta.len(),
                _ => {}
            }
        }
    }
    Ok(sizes)
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    hwm: u64,
}

/// `VmRSS` and `VmHWM` of this process, bytes.
fn memory() -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/self/status"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn per_million(value: f64, carts: u64) -> f64 {
    value * 1e6 / carts as f64
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let n = args.carts;
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            ensure!(
                std::fs::read_dir(dir)?.next().is_none(),
                "{} is not empty",
                dir.display()
            );
            dir.clone()
        }
        None => {
            temp = tempfile::TempDir::new()?;
            temp.path().to_path_buf()
        }
    };
    let windows = Windows {
        dedup: Duration::from_secs(24 * 3600),
        contact_lookback: Duration::from_secs(7 * 24 * 3600),
    };
    let tenants: Vec<String> = (0..args.tenants).map(|t| format!("shop-{t:03}")).collect();
    eprintln!(
        "state_scale: {n} carts, {} tenants, store in {}",
        args.tenants,
        dir.display()
    );

    let mem_start = memory()?;
    let mut store = Store::open(&dir, windows)?;
    let mem_before = memory()?;

    // 1. Load.
    let mut build = Duration::ZERO;
    let mut drain_load = Duration::ZERO;
    let mut drained_events = 0;
    let mut last_deadline = i64::MIN;
    let mut first_deadline = i64::MAX;
    let step = n.div_ceil(PROGRESS_STEPS);
    let started = now();
    let mut lap = (started, 0u64);
    // Events/s over the first and the last progress step; RSS at about half the carts.
    let mut first_load: Option<f64> = None;
    let mut last_load = 0.0;
    let mut halfway = None;
    for i in 0..n {
        let t = now();
        let d = delivery(i, n, &tenants);
        build += t.elapsed();
        let applied = store.stage(Input {
            offset: i as i64,
            tenant: &tenants[d.tenant],
            delivery_id: &d.delivery_id,
            event: &d.event,
            at_ms: d.at_ms,
            // Every delivery arrives before the first deadline (a burst, or a backlog), so
            // the watermark fires nothing during the load and every cart stays tracked.
            received_ms: T0,
            window_ms: d.window_ms,
        })?;
        ensure!(
            !applied.duplicate && applied.transitions.is_empty(),
            "delivery {i}: unexpected {applied:?}"
        );
        last_deadline = last_deadline.max(d.at_ms + d.window_ms);
        first_deadline = first_deadline.min(d.at_ms + d.window_ms);
        if (i + 1) % COMMIT_EVERY == 0 || i + 1 == n {
            store.commit()?;
        }
        if (i + 1) % DRAIN_EVERY == 0 || i + 1 == n {
            let t = now();
            drained_events += drain(&mut store)?;
            drain_load += t.elapsed();
        }
        if (i + 1) % step == 0 || i + 1 == n {
            let (at, done) = lap;
            let recent = rate(i + 1 - done, at.elapsed());
            first_load.get_or_insert(recent);
            last_load = recent;
            let mem = memory()?;
            if halfway.is_none() && 2 * (i + 1) >= n && i + 1 < n {
                halfway = Some((i + 1, mem.rss));
            }
            eprintln!(
                "  load {:>10}/{n}  {recent:>8.0} events/s over the last {:<8}  RSS {:.0} MiB",
                i + 1,
                i + 1 - done,
                mib(mem.rss)
            );
            lap = (now(), i + 1);
        }
    }
    let load = started.elapsed();
    let mem_loaded = memory()?;
    let disk_loaded = disk(&dir)?;
    let next = store.next_deadline()?;

    // 2. Close and reopen: the write-ahead log is replayed into SST files.
    drop(store);
    let disk_closed = disk(&dir)?;
    let t = now();
    let mut store = Store::open(&dir, windows)?;
    let reopen = t.elapsed();
    let disk_reopened = disk(&dir)?;
    let families = store.family_sizes()?;
    eprintln!(
        "  table files by column family after reopening: {}",
        families
            .iter()
            .map(|(name, bytes)| format!("{name} {:.0} B/cart", *bytes as f64 / n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mem_reopened = memory()?;

    // 4. Fire every timer.
    let fire_at = last_deadline + 1;
    let mut fired = 0u64;
    let mut wrong = 0u64;
    let mut calls = 0u64;
    let mut drained_transitions = 0;
    let mut drain_fire = Duration::ZERO;
    let started = now();
    let mut lap = (started, 0u64);
    let mut first_fire: Option<(f64, u64)> = None;
    let mut last_fire = (0.0, 0);
    loop {
        let transitions = store.fire_due(fire_at, args.batch)?;
        calls += 1;
        if transitions.is_empty() {
            break;
        }
        wrong += transitions
            .iter()
            .filter(|t| (t.from, t.to) != (Phase::Active, Phase::Abandoned))
            .count() as u64;
        fired += transitions.len() as u64;
        let t = now();
        drained_transitions += drain(&mut store)?;
        drain_fire += t.elapsed();
        if fired / step > lap.1 / step || fired == n {
            let (at, done) = lap;
            let recent = rate(fired - done, at.elapsed());
            first_fire.get_or_insert((recent, fired - done));
            last_fire = (recent, fired - done);
            eprintln!(
                "  fire {fired:>10}/{n}  {recent:>8.0} timers/s over the last {:<8}  RSS {:.0} MiB",
                fired - done,
                mib(memory()?.rss)
            );
            lap = (now(), fired);
        }
    }
    let fire = started.elapsed();
    let left = store.next_deadline()?;
    let mem_fired = memory()?;
    let disk_fired = disk(&dir)?;
    let probe = delivery(n / 2, n, &tenants);
    let probe_phase = store
        .cart(
            &tenants[probe.tenant],
            probe.event.cart_token.as_deref().unwrap_or_default(),
        )?
        .map(|c| c.phase);

    // The tool checks its own result.
    let mut failures = Vec::new();
    if next != Some(first_deadline) {
        failures.push(format!(
            "next_deadline after loading: {next:?}, expected {first_deadline}"
        ));
    }
    if fired != n {
        failures.push(format!("{fired} timers fired, expected {n}"));
    }
    if wrong > 0 {
        failures.push(format!("{wrong} transitions were not active → abandoned"));
    }
    if left.is_some() {
        failures.push(format!("timers left after firing: next at {left:?}"));
    }
    if drained_events != n || drained_transitions != fired {
        failures.push(format!(
            "outbox drained {drained_events} events and {drained_transitions} transitions, \
             expected {n} and {fired}"
        ));
    }
    if probe_phase != Some(Phase::Abandoned) {
        failures.push(format!("cart {} is {probe_phase:?}", n / 2));
    }

    let bytes_per_cart = disk_reopened.total as f64 / n as f64;
    let rss_growth = mem_loaded.rss.saturating_sub(mem_before.rss);
    let hwm_growth = mem_loaded.hwm.saturating_sub(mem_before.rss);
    // The fixed costs (memtables, block cache) fill up early; the second half shows what each
    // further cart costs.
    let marginal =
        halfway.map(|(carts, rss)| per_million(mib(mem_loaded.rss.saturating_sub(rss)), n - carts));
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    let sizes = |d: Disk| {
        format!(
            "{} ({} SST, {} WAL, {} other)",
            mb(d.total),
            mb(d.sst),
            mb(d.wal),
            mb(d.total - d.sst - d.wal)
        )
    };

    println!("state_scale: {n} carts over {} tenants", args.tenants);
    println!(
        "  load    {:>8.2} s  {:>9.0} events/s  (event construction {:.2} s, outbox drain {:.2} s)",
        load.as_secs_f64(),
        rate(n, load),
        build.as_secs_f64(),
        drain_load.as_secs_f64()
    );
    println!(
        "          {:.0} events/s over the first {step} carts, {:.0} over the last {}",
        first_load.unwrap_or_default(),
        last_load,
        n - (n - 1) / step * step
    );
    println!("  disk    loaded   {}", sizes(disk_loaded));
    println!("          closed   {}", sizes(disk_closed));
    println!(
        "          reopened {}  (reopen took {:.2} s)",
        sizes(disk_reopened),
        reopen.as_secs_f64()
    );
    println!(
        "          → {:.0} bytes/cart, {:.3} GB per million carts (reopened; loaded: {:.0} bytes/cart)",
        bytes_per_cart,
        bytes_per_cart * 1e6 / 1e9,
        disk_loaded.total as f64 / n as f64
    );
    println!("          after firing {}", sizes(disk_fired));
    println!(
        "  memory  RSS {:.1} MiB at start, {:.1} MiB after open, {:.1} MiB loaded (peak {:.1} MiB), \
         {:.1} MiB reopened, {:.1} MiB fired (peak {:.1} MiB)",
        mib(mem_start.rss),
        mib(mem_before.rss),
        mib(mem_loaded.rss),
        mib(mem_loaded.hwm),
        mib(mem_reopened.rss),
        mib(mem_fired.rss),
        mib(mem_fired.hwm)
    );
    println!(
        "          → loading grew RSS by {:.1} MiB ({:.1} MiB per million carts; peak {:.1} MiB per million)",
        mib(rss_growth),
        per_million(mib(rss_growth), n),
        per_million(mib(hwm_growth), n)
    );
    if let Some(marginal) = marginal {
        println!(
            "          → over the second half of the load: {marginal:.1} MiB per million further carts"
        );
    }
    println!(
        "  fire    {:>8.2} s  {:>9.0} timers/s  ({fired} transitions in {calls} calls of up to {}, outbox drain {:.2} s)",
        fire.as_secs_f64(),
        rate(fired, fire),
        args.batch,
        drain_fire.as_secs_f64()
    );
    println!(
        "          {:.0} timers/s over the first {}, {:.0} over the last {}",
        first_fire.unwrap_or_default().0,
        first_fire.unwrap_or_default().1,
        last_fire.0,
        last_fire.1
    );
    if failures.is_empty() {
        println!("  check   ok: every cart fired exactly once, no timers left, outbox drained");
    } else {
        for failure in &failures {
            println!("  check   FAILED: {failure}");
        }
    }

    let summary = serde_json::json!({
        "carts": n,
        "tenants": args.tenants,
        "fire_batch": args.batch,
        "load_s": load.as_secs_f64(),
        "load_events_per_s": rate(n, load),
        "load_build_s": build.as_secs_f64(),
        "load_drain_s": drain_load.as_secs_f64(),
        "load_events_per_s_first_tenth": first_load,
        "load_events_per_s_last_tenth": last_load,
        "disk_loaded_bytes": disk_loaded.total,
        "disk_loaded_wal_bytes": disk_loaded.wal,
        "disk_reopened_bytes": disk_reopened.total,
        "disk_fired_bytes": disk_fired.total,
        "reopen_s": reopen.as_secs_f64(),
        "bytes_per_cart": bytes_per_cart,
        "gb_per_million_carts": bytes_per_cart * 1e6 / 1e9,
        "rss_start_mib": mib(mem_start.rss),
        "rss_before_load_mib": mib(mem_before.rss),
        "rss_loaded_mib": mib(mem_loaded.rss),
        "hwm_loaded_mib": mib(mem_loaded.hwm),
        "rss_reopened_mib": mib(mem_reopened.rss),
        "rss_fired_mib": mib(mem_fired.rss),
        "hwm_fired_mib": mib(mem_fired.hwm),
        "rss_mib_per_million_carts": per_million(mib(rss_growth), n),
        "rss_mib_per_million_carts_second_half": marginal,
        "fire_s": fire.as_secs_f64(),
        "fire_timers_per_s": rate(fired, fire),
        "fire_drain_s": drain_fire.as_secs_f64(),
        "fire_timers_per_s_first_tenth": first_fire.map(|(rate, _)| rate),
        "fire_timers_per_s_last_tenth": last_fire.0,
        "fired": fired,
        "ok": failures.is_empty(),
    });
    println!("{summary}");
    if !failures.is_empty() {
        bail!("{} check(s) failed", failures.len());
    }
    Ok(())
}
