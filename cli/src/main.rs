//! The `burrow` binary: argument parsing, config, and running nodes on the runtime chosen with
//! `--runtime` among those built in (`node`: tokio by default, smol or mio). No protocol logic
//! lives here.

mod admin;
mod args;
mod attach;
mod breach;
mod check;
mod config;
mod control;
mod demo;
mod hooks;
mod import;
mod keys;
mod logging;
mod metrics;
mod netcheck;
mod node;
mod notify;
mod portmap;
mod run;
mod secrets;
mod store;
#[cfg(test)]
mod test_dir;

use clap::{CommandFactory, Parser};

use args::{Cli, Command, DaemonArgs, LogFormat, ServerCommand};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        eprintln!("burrow: error: {e}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<(), String> {
    let level = cli.log_level.clone();
    let format = cli.log_format;
    let runtime = cli.runtime;
    let or_default = |r: Option<node::Runtime>| r.unwrap_or_else(node::Runtime::default_built);
    match cli.command {
        Command::Keygen { out, force } => {
            let key = keys::generate()?;
            match out {
                Some(path) => {
                    // The secret goes to the file; stdout gets what others may see, alone,
                    // for `PUB=$(burrow keygen --out FILE)`.
                    keys::write(&path, &key, force)?;
                    eprintln!("wrote secret key to {}", path.display());
                    println!("{}", key.public_key());
                }
                None => {
                    println!("secret key: {}", key.to_base64());
                    println!("public key: {}", key.public_key());
                    eprintln!(
                        "keep the secret key to yourself; `burrow keygen --out FILE` writes it to \
                         an owner-only file instead"
                    );
                }
            }
            Ok(())
        }
        Command::Token => {
            println!("{}", keys::token()?);
            Ok(())
        }
        Command::Pubkey { key } => {
            let (public, warning) = keys::public_of(&key)?;
            if let Some(warning) = warning {
                eprintln!("burrow: warning: {warning}");
            }
            println!("{public}");
            Ok(())
        }
        Command::Status { state_dir, json } => {
            let dir = state_dir.unwrap_or_else(config::default_state_dir);
            let (raw, status) = control::status(&dir)?;
            if json {
                println!("{raw}");
            } else {
                print!("{}", control::render(&status));
            }
            Ok(())
        }
        Command::Server {
            init:
                Some(ServerCommand::Init {
                    state_dir,
                    tenant,
                    out,
                    limits,
                }),
            ..
        } => admin::init(&state_dir, &tenant, out.as_deref(), &limits),
        Command::Server {
            init:
                Some(ServerCommand::Limits {
                    state_dir,
                    tenant,
                    limits,
                }),
            ..
        } => admin::set_limits(&state_dir, &tenant, &limits),
        Command::Attach {
            path,
            expose,
            listen,
            state_dir,
        } => {
            let dir = state_dir.unwrap_or_else(config::default_state_dir);
            let summary = control::attach(&dir, &path, expose.as_deref(), listen.as_deref())?;
            println!("{summary}");
            Ok(())
        }
        Command::Netcheck {
            server,
            config,
            json,
            no_port_mapping,
        } => {
            let server = match (server, config) {
                (Some(s), _) => s,
                (None, Some(path)) => config::load(&path)?.server.ok_or_else(|| {
                    format!(
                        "{}: no `server` in the file; give --server HOST:PORT",
                        path.display()
                    )
                })?,
                (None, None) => return Err("give --server HOST:PORT or -c CONFIG".into()),
            };
            let report = netcheck::run(&server, !no_port_mapping)?;
            if json {
                println!("{}", netcheck::to_json(&report));
            } else {
                println!("{report}");
            }
            if report.public_v4.is_none() && !matches!(report.public_v6, Some(Some(_))) {
                return Err(format!("no answer from {server} over UDP"));
            }
            Ok(())
        }
        Command::Ping {
            target,
            count,
            interval,
            state_dir,
        } => {
            if !(0.2..=60.0).contains(&interval) {
                return Err(format!("--interval {interval}: give 0.2 to 60 seconds"));
            }
            let dir = state_dir.unwrap_or_else(config::default_state_dir);
            let mut answered = 0;
            for i in 0..count {
                if i > 0 {
                    std::thread::sleep(std::time::Duration::from_secs_f64(interval));
                }
                match control::ping(&dir, &target) {
                    Ok((path, rtt)) => {
                        answered += 1;
                        let ms = rtt.as_secs_f64() * 1000.0;
                        println!("ping {target} seq={i}: {path} rtt={ms:.2} ms");
                    }
                    // No daemon, or a target it cannot ping: no point in trying again.
                    Err(e) if i == 0 && answered == 0 && !e.starts_with("no answer") => {
                        return Err(format!("ping {target}: {e}"));
                    }
                    Err(e) => println!("ping {target} seq={i}: {e}"),
                }
            }
            if answered == 0 {
                return Err(format!("ping {target}: no answer to {count} pings"));
            }
            Ok(())
        }
        Command::Import {
            token,
            forget,
            token_file,
            state_dir,
        } => {
            let dir = state_dir.unwrap_or_else(config::default_state_dir);
            let token = match (token, token_file) {
                (Some(token), _) => token,
                (None, Some(file)) => secrets::read_token(&file)?,
                (None, None) => return Err("give the token, or --token-file FILE".into()),
            };
            if !(forget && token.starts_with('/')) {
                import::check(&token)?;
            }
            if forget {
                println!("{}", control::forget(&dir, &token)?);
            } else {
                println!("{}", control::import(&dir, &token)?);
            }
            Ok(())
        }
        Command::Detach { path, state_dir } => {
            let dir = state_dir.unwrap_or_else(config::default_state_dir);
            println!("{}", control::attach(&dir, &path, None, None)?);
            Ok(())
        }
        Command::Admin {
            server,
            server_key,
            token,
            token_file,
            action,
        } => {
            // A one-shot command: only warnings and errors unless asked.
            init_logs(level, format, Some("warn".into()), None)?;
            admin::run(
                or_default(runtime),
                &server,
                &server_key,
                token,
                token_file.as_deref(),
                action,
            )
        }
        Command::Server {
            init: None,
            state_dir,
            listen,
            key,
            mut tokens,
            token_file,
            open,
            cb_listen,
            cb_lease_timeout,
            peer_wait,
            netcheck_udp,
            publish_ports,
            publish_limit,
            publish_sni,
            sni_domain,
            metrics,
            metrics_public,
            relay_rate,
        } => {
            let netcheck = netcheck::alternate_addr(&netcheck_udp, listen)?;
            let metrics = metrics
                .map(|addr| metrics::Listen::new(addr, metrics_public))
                .transpose()?;
            let key = key.ok_or("--key is required")?;
            for t in &tokens {
                secrets::check_token(t).map_err(|e| format!("--token: {e}"))?;
            }
            if let Some(path) = token_file {
                tokens.extend(secrets::read_tokens(&path)?);
            }
            init_logs(level, format, None, None)?;
            let cb = cb_listen.map(|addr| {
                let mut config = burrow_core::breach::BreachConfig::default();
                if let Some(secs) = cb_lease_timeout {
                    config.lease_timeout = std::time::Duration::from_secs(secs);
                }
                (addr, config)
            });
            let publish = burrow_core::rendezvous::PublishConfig {
                ports: publish_ports,
                max_per_token: publish_limit,
                sni: publish_sni
                    .zip(sni_domain)
                    .map(|(port, domain)| burrow_core::rendezvous::SniConfig { port, domain }),
            };
            run::server(run::ServerOptions {
                runtime: or_default(runtime),
                listen,
                key,
                tokens,
                open,
                state_dir,
                cb,
                netcheck,
                publish,
                metrics,
                peer_wait: peer_wait.map(std::time::Duration::from_secs),
                relay_rate,
            })
        }
        Command::Daemon { config, common } => {
            let file = config::load(&config)?;
            let (file_level, file_format) = (file.log_level.clone(), file.log_format);
            let runtime = or_default(runtime.or(file.runtime));
            let settings = config::settings(file, common.clone(), &config.display().to_string())?;
            init_logs(level, format, file_level, file_format)?;
            run::daemon(runtime, settings, Some(run::Reloader { config, common }))
        }
        Command::Check { config } => match check::daemon(&config) {
            Ok(summary) => {
                println!("ok: {}: {summary}", config.display());
                Ok(())
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{p}");
                }
                Err(format!(
                    "{} problem{} in {}",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" },
                    config.display()
                ))
            }
        },
        Command::Reload { state_dir } => {
            let dir = state_dir.unwrap_or_else(config::default_state_dir);
            println!("{}", control::reload(&dir)?);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "burrow", &mut std::io::stdout());
            Ok(())
        }
        Command::Expose {
            name,
            target,
            protocol,
            proxy_protocol,
            publish,
            common,
        } => {
            let file = config::File {
                expose: vec![config::Expose {
                    name,
                    target,
                    protocol: Some(protocol.to_string()),
                    proxy_protocol: proxy_protocol.map(|v| v.to_string()),
                    route: None,
                    publish: publish.map(|p| config::Publish::Word(p.to_string())),
                    ..config::Expose::default()
                }],
                ..config::File::default()
            };
            quick(file, common, level, format, or_default(runtime))
        }
        Command::Connect {
            name,
            listen,
            peer_key,
            protocol,
            common,
        } => {
            let file = config::File {
                connect: vec![config::Connect {
                    name,
                    listen: listen.to_string(),
                    peer_key,
                    protocol: Some(protocol.to_string()),
                    route: None,
                    ..config::Connect::default()
                }],
                ..config::File::default()
            };
            quick(file, common, level, format, or_default(runtime))
        }
        Command::Demo { hold } => {
            init_logs(level.or(Some("warn".into())), format, None, None)?;
            demo::run(or_default(runtime), hold)
        }
    }
}

/// `burrow expose` / `burrow connect`: a daemon from flags alone.
fn quick(
    file: config::File,
    common: DaemonArgs,
    level: Option<String>,
    format: Option<LogFormat>,
    runtime: node::Runtime,
) -> Result<(), String> {
    let settings = config::settings(file, common, "")?;
    init_logs(level, format, None, None)?;
    run::daemon(runtime, settings, None)
}

fn init_logs(
    flag_level: Option<String>,
    flag_format: Option<LogFormat>,
    file_level: Option<String>,
    file_format: Option<LogFormat>,
) -> Result<(), String> {
    let level = flag_level.or(file_level).unwrap_or_else(|| "info".into());
    logging::init(&level, flag_format.or(file_format).unwrap_or_default())
}
