//! Runs one hot path a given number of times, for instruction counts under valgrind, which stay
//! put on a noisy shared machine where timings move ±10 %:
//!
//! - `ingress`: the ingress's work on the 5 KB Shopify checkout between reading the body and
//!   handing the record to the producer (route, tenant clue, registry, signature, headers — the
//!   `ingress_hot_path` bench's `shopify` case);
//! - `normalize`: normalizing that checkout into the event (inspect, then normalize).
//!
//! Setup (reading the fixtures, building the registry) is counted too, so `scripts/bench.sh`
//! runs each path twice, N and N + 1,000 times, and reports the difference divided by 1,000:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions normalize 1100
//! ```

#[path = "../benches/support/ingress.rs"]
mod ingress;

use std::hint::black_box;
use std::process::ExitCode;

use cartstream::providers::{self, Provider, Request};

const USAGE: &str = "usage: instructions ingress|normalize ITERATIONS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, iterations) = match args.as_slice() {
        [path, n] => match n.parse::<u64>() {
            Ok(n) => (path.as_str(), n),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let case = ingress::cases()
        .into_iter()
        .find(|case| case.name == "shopify")
        .expect("the shopify case");
    match path {
        "ingress" => {
            let registry = ingress::registry();
            for _ in 0..iterations {
                black_box(ingress::hot_path(&registry, black_box(&case)));
            }
        }
        "normalize" => {
            let shopify = providers::shopify::Shopify;
            for _ in 0..iterations {
                let request = Request::new(black_box(&case.headers), black_box(&case.body));
                let seen = shopify.inspect(&request).expect("inspect");
                black_box(shopify.normalize(&case.body, &seen));
            }
        }
        _ => return usage(),
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
