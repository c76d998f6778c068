//! The `k8gb` binary: a thin command-line shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use k8gb::config::{self, ConfigArgs};
use k8gb::logging;

#[derive(Parser, Debug)]
#[command(
    name = "k8gb",
    version,
    about = "Global server load balancer for Kubernetes, in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (Gslb in k8gb.io and k8gb.absa.oss, ZoneDelegation) as YAML.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Serve DNS: the Gslbs of a config file (standalone mode).
    Run {
        #[command(flatten)]
        config: Box<ConfigArgs>,
    },
    /// Start a three-cluster mesh on loopback, fail eu over and back, and print the answers.
    Demo {
        /// Keep the mesh running after the scenario (until Ctrl-C) and print how to query it.
        #[arg(long)]
        keep: bool,
        /// Last octet of the first cluster's address: clusters on 127.0.0.N..N+2, backends on N+10..N+12.
        #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u8).range(1..=240))]
        base: u8,
        /// Benchmark mode: failover/fail-back cycles to time (see bench/convergence).
        #[arg(long, default_value_t = 1, hide = true)]
        cycles: u32,
        /// Benchmark mode: print one JSON line per event.
        #[arg(long, hide = true)]
        json: bool,
        /// Benchmark mode: no NOTIFY, peers notice changes by their heartbeat poll.
        #[arg(long, hide = true)]
        no_notify: bool,
        /// Benchmark mode: seconds between peer heartbeats.
        #[arg(long, default_value_t = 0.25, hide = true)]
        heartbeat: f64,
        /// Benchmark mode: peer exchange over DoT with this CA, certificate, key (comma-separated paths).
        #[arg(long, hide = true, value_name = "CA,CERT,KEY")]
        dot: Option<String>,
    },
    /// Parse and validate the configuration (flags, environment, file) and exit.
    CheckConfig {
        #[command(flatten)]
        config: Box<ConfigArgs>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::CheckConfig { config } => check_config(&config),
        Command::Demo {
            keep,
            base,
            cycles,
            json,
            no_notify,
            heartbeat,
            dot,
        } => {
            match demo_options(keep, base, cycles, json, no_notify, heartbeat, dot).and_then(k8gb::demo::run)
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => match k8gb::run::run(*config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", e.message);
                ExitCode::from(e.code)
            }
        },
    }
}

fn demo_options(
    keep: bool,
    base: u8,
    cycles: u32,
    json: bool,
    no_notify: bool,
    heartbeat: f64,
    dot: Option<String>,
) -> Result<k8gb::demo::DemoOptions, String> {
    let dot = match dot {
        None => None,
        Some(s) => {
            let parts: Vec<PathBuf> = s.split(',').map(PathBuf::from).collect();
            let [ca, cert, key] = <[PathBuf; 3]>::try_from(parts)
                .map_err(|_| "--dot needs three comma-separated paths: CA,CERT,KEY".to_string())?;
            Some((ca, cert, key))
        }
    };
    if !(0.01..=60.0).contains(&heartbeat) {
        return Err(format!("--heartbeat {heartbeat} is out of range 0.01..=60"));
    }
    Ok(k8gb::demo::DemoOptions {
        keep,
        base,
        cycles,
        notify: !no_notify,
        heartbeat,
        dot,
        json,
    })
}

fn print_crds(out_dir: Option<PathBuf>) -> ExitCode {
    let crds = match k8gb::api::crds() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot render the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out_dir {
        None => {
            for c in &crds {
                print!("---\n{}", c.yaml);
            }
        }
        Some(dir) => {
            for c in &crds {
                let path = dir.join(c.file_name);
                if let Err(e) = std::fs::write(&path, &c.yaml) {
                    eprintln!("error: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}

fn check_config(args: &ConfigArgs) -> ExitCode {
    match config::load(args) {
        Ok(cfg) => {
            logging::init(&cfg.log);
            logging::startup("check-config", &cfg);
            println!("config OK: {}", cfg.features());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
