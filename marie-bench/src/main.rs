//! `marie-bench`: MARIE against a bare socketioxide server doing the same events, side by
//! side, on this machine.
//!
//! ```text
//! marie-bench all [--smoke]              every scenario against both targets, then the table
//! marie-bench idle|fanout|conversations|paced|acks|cluster|history|list [--smoke]
//! marie-bench serve --target marie|bare  a server alone (scenario 1 runs it as a child)
//! ```
//!
//! The client speaks Engine.IO v4 / Socket.IO v5 over raw WebSocket frames (no client
//! library), from several 127.0.0.x source addresses. The servers run in this process on
//! a runtime of their own (scenario 1: in a child process, so that the client's memory
//! does not count). Every scenario has a count and a time limit. See `docs/benchmarks.md`.

mod client;
mod scenarios;
mod server;
mod wire;

use std::future::Future;
use std::sync::Arc;

use client::BoxError;
use scenarios::{Figure, Sizes, Store};
use server::Target;

/// The scenarios, in the order they run.
const SCENARIOS: [&str; 8] = [
    "idle",
    "fanout",
    "conversations",
    "paced",
    "acks",
    "cluster",
    "history",
    "list",
];

fn usage() -> ! {
    eprintln!(
        "usage: marie-bench all|idle|fanout|conversations|paced|acks|cluster|history|list [--smoke]\n       marie-bench serve --target marie|bare"
    );
    std::process::exit(2)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else { usage() };
    if command == "serve" {
        let target = args
            .iter()
            .position(|a| a == "--target")
            .and_then(|i| args.get(i + 1))
            .and_then(|t| Target::parse(t))
            .unwrap_or_else(|| usage());
        return server::serve_child(target);
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let chosen: Vec<&str> = match command.as_str() {
        "all" => SCENARIOS.to_vec(),
        s if SCENARIOS.contains(&s) => vec![s],
        _ => usage(),
    };
    let sizes = if smoke { Sizes::smoke() } else { Sizes::full() };
    // The client's runtime; each server gets its own (see `server::start`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (rows, comparisons) = runtime.block_on(run(&chosen, sizes))?;
    runtime.shutdown_background();
    println!();
    println!(
        "marie-bench{}: MARIE vs bare socketioxide 0.18 ({} cores)",
        if smoke { " --smoke" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    print_table(&rows, "bare socketioxide", "bare");
    for (target, rows) in &comparisons {
        let (title, column, short) = match target {
            Target::Node => (
                "Node socket.io 4.8 (marie-bench/node)",
                "Node socket.io",
                "Node",
            ),
            _ => (
                "The seed's design: Flask-SocketIO 5.7 on eventlet (marie-bench/seed)",
                "Flask-SocketIO",
                "seed",
            ),
        };
        println!();
        println!("{title}, the same client and scenario:");
        println!();
        print_table(rows, column, short);
    }
    Ok(())
}

/// One line of the table.
struct Row {
    scenario: String,
    metric: String,
    marie: f64,
    bare: f64,
}

/// The rows against bare socketioxide, and the idle scenario's rows against each comparison
/// server that could run (`bare` holds that server's figure there).
async fn run(
    chosen: &[&str],
    sizes: Sizes,
) -> Result<(Vec<Row>, Vec<(Target, Vec<Row>)>), BoxError> {
    let mut rows = Vec::new();
    let mut comparisons = Vec::new();
    for &name in chosen {
        let label = match name {
            "idle" => format!("1. idle, {} connections", sizes.idle),
            "fanout" => format!(
                "2. fan-out, {} chunks x {} members",
                sizes.fan_chunks, sizes.fan_members
            ),
            "conversations" => format!(
                "3. {} conversations x {} chunks",
                sizes.conversations, sizes.conv_chunks
            ),
            "paced" => format!(
                "3b. {} conversations x {} chunks, {} ms apart",
                sizes.paced_conversations,
                sizes.conv_chunks,
                sizes.paced_delay.as_millis()
            ),
            "acks" => format!(
                "4. acks, {} clients x {} rounds",
                sizes.ack_clients, sizes.ack_rounds
            ),
            "cluster" => format!(
                "5. two nodes over Redis, {} chunks x {} members",
                sizes.cluster_chunks, sizes.cluster_members
            ),
            "history" => format!(
                "6. history of {} messages, {} clients x {} pages",
                sizes.history_messages, sizes.history_clients, sizes.history_rounds
            ),
            _ => format!(
                "7. a list of {} conversations, {} clients x {} pages",
                sizes.list_conversations, sizes.list_clients, sizes.list_rounds
            ),
        };
        if name == "history" {
            let messages = Arc::new(scenarios::history_messages(sizes.history_messages)?);
            let run = |store| scenarios::history(store, &messages, sizes);
            rows.extend(by_store(&label, run).await?);
            continue;
        }
        if name == "list" {
            let run = |store| scenarios::list(store, sizes);
            rows.extend(by_store(&label, run).await?);
            continue;
        }
        if name == "cluster" && !scenarios::redis_reachable().await {
            eprintln!("== {label}: skipped, no Redis at 127.0.0.1:6379");
            rows.push(Row {
                scenario: label,
                metric: "skipped: no Redis at 127.0.0.1:6379".into(),
                marie: f64::NAN,
                bare: f64::NAN,
            });
            continue;
        }
        let mut results = Vec::new();
        for target in [Target::Marie, Target::Bare] {
            eprintln!("== {label}: {}", target.name());
            let figures = match name {
                "idle" => scenario(scenarios::idle(target, sizes)).await,
                "fanout" => scenario(scenarios::fan_out(target, sizes)).await,
                "conversations" => scenario(scenarios::conversations(target, sizes, false)).await,
                "paced" => scenario(scenarios::conversations(target, sizes, true)).await,
                "acks" => scenario(scenarios::acks(target, sizes)).await,
                _ => scenario(scenarios::cluster(target, sizes)).await,
            }?;
            for f in &figures {
                eprintln!("   {}: {:.1}", f.metric, f.value);
            }
            results.push(figures);
            // Let sockets in TIME_WAIT and the last server's threads go.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        let bare = results.pop().unwrap_or_default();
        let marie = results.pop().unwrap_or_default();
        if name == "idle" {
            for target in [Target::Node, Target::Seed] {
                if let Err(why) = scenarios::comparison_server(target) {
                    eprintln!("== {label}: {}: not run, {why}", target.name());
                    continue;
                }
                eprintln!("== {label}: {}", target.name());
                // A comparison server that fails does not stop the run; it says why.
                let figures = match scenarios::idle(target, sizes).await {
                    Ok(figures) => figures,
                    Err(e) => {
                        eprintln!("   failed: {e}");
                        continue;
                    }
                };
                let mut compared = Vec::new();
                for (m, other) in marie.iter().zip(figures) {
                    eprintln!("   {}: {:.1}", other.metric, other.value);
                    compared.push(Row {
                        scenario: label.clone(),
                        metric: other.metric,
                        marie: m.value,
                        bare: other.value,
                    });
                }
                comparisons.push((target, compared));
            }
        }
        for (m, b) in marie.into_iter().zip(bare) {
            rows.push(Row {
                scenario: label.clone(),
                metric: m.metric,
                marie: m.value,
                bare: b.value,
            });
        }
    }
    Ok((rows, comparisons))
}

/// A scenario of stores (6, 7) against bare socketioxide (`run(None)`), then against
/// MARIE on each store that can run here: each store's rows beside the bare server's
/// figures.
async fn by_store<F, Fut>(label: &str, run: F) -> Result<Vec<Row>, BoxError>
where
    F: Fn(Option<Store>) -> Fut,
    Fut: Future<Output = Result<Vec<Figure>, BoxError>>,
{
    // The baseline first, on a machine as quiet as for MARIE's first store: run after the
    // SQL and Redis stores, its p99 ranged from 0.8 to 4.1 ms over four runs (first: 1.6
    // and 1.8 ms in two).
    eprintln!("== {label}: bare");
    let bare = run(None).await?;
    for f in &bare {
        eprintln!("   {}: {:.1}", f.metric, f.value);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut stores = Vec::new();
    for store in Store::ALL {
        let label = format!("{label}, {}", store.name());
        if let Some(why) = store.unavailable().await {
            eprintln!("== {label}: skipped, {why}");
            stores.push((label, Err(why)));
            continue;
        }
        eprintln!("== {label}: marie");
        let figures = run(Some(store)).await?;
        for f in &figures {
            eprintln!("   {}: {:.1}", f.metric, f.value);
        }
        stores.push((label, Ok(figures)));
        // Let sockets in TIME_WAIT and the last server's threads go.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut rows = Vec::new();
    for (label, figures) in stores {
        match figures {
            Err(why) => rows.push(Row {
                scenario: label,
                metric: format!("skipped: {why}"),
                marie: f64::NAN,
                bare: f64::NAN,
            }),
            Ok(figures) => rows.extend(figures.into_iter().zip(&bare).map(|(m, b)| Row {
                scenario: label.clone(),
                metric: m.metric,
                marie: m.value,
                bare: b.value,
            })),
        }
    }
    Ok(rows)
}

async fn scenario(
    f: impl Future<Output = Result<Vec<Figure>, BoxError>>,
) -> Result<Vec<Figure>, BoxError> {
    f.await
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The rows as a Markdown table; `other` names the column beside MARIE's (`short` in the
/// ratio's heading).
fn print_table(rows: &[Row], other: &str, short: &str) {
    println!("| scenario | figure | MARIE | {other} | MARIE / {short} |");
    println!("|---|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            number(r.marie),
            number(r.bare),
            ratio(r)
        );
    }
}

/// MARIE's figure over the other's.
fn ratio(r: &Row) -> String {
    if r.bare != 0.0 && !r.bare.is_nan() && !r.marie.is_nan() {
        format!("{:.2}x", r.marie / r.bare)
    } else {
        "-".into()
    }
}
