//! `burrow demo`: the whole tunnel on one machine, in one process, on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::Config;
use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::ServerConfig;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

use crate::node::{Node, NodeConfig, Runtime};
use crate::{config, keys, run};

const SERVICE: &str = "/demo/echo";
const LINE: &str = "hello through burrow";

/// Runs the demo on `runtime`; with `hold`, keeps it running after the check and says how to
/// try it by hand, until Ctrl-C.
pub fn run(runtime: Runtime, hold: bool) -> Result<(), String> {
    let interrupted = if hold { Some(run::interrupts()?) } else { None };
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let echo = echo_service()?;
    println!("1. echo service listening on tcp {echo}");

    let server_key = keys::generate()?;
    let server = Node::spawn(
        runtime,
        NodeConfig::new(
            Config::server(server_key.clone(), ServerConfig::default()),
            loopback,
        ),
    )?;
    println!(
        "2. rendezvous server on udp {} (key {})",
        server.udp_addr(),
        server.public_key()
    );

    let rendezvous = RendezvousConfig::new(server_key.public_key(), server.udp_addr(), "demo");
    let service = config::service(SERVICE)?;
    let mut a = NodeConfig::new(
        Config::daemon(keys::generate()?, rendezvous.clone()),
        loopback,
    );
    a.expose = vec![(service.clone(), echo.to_string())];
    let exposer = Node::spawn(runtime, a)?;
    println!(
        "3. daemon A on udp {} exposes {SERVICE} -> {echo}",
        exposer.udp_addr()
    );

    let mut b = NodeConfig::new(Config::daemon(keys::generate()?, rendezvous), loopback);
    b.connect = vec![(service, loopback)];
    let connector = Node::spawn(runtime, b)?;
    let listen = connector.listeners()[0].1;
    println!(
        "4. daemon B on udp {} listens on tcp {listen} for {SERVICE}",
        connector.udp_addr()
    );

    for node in [&exposer, &connector] {
        registered(node)?;
    }
    println!("5. both daemons registered with the server");

    let reply = round_trip(listen)?;
    println!("6. sent {LINE:?} to {listen}, got back {reply:?}");
    let ok = reply == LINE;
    if let Ok(status) = connector.control().status() {
        if let Some(p) = status
            .peers
            .iter()
            .find(|p| p.addr != Some(server.udp_addr()))
        {
            println!(
                "   path B -> A: {} direct, rtt {}",
                p.addr.map_or("-".into(), |a| a.to_string()),
                p.rtt_ms.map_or("-".into(), |r| format!("{r:.2} ms"))
            );
        }
    }
    if ok {
        println!("demo OK: the line came back through the tunnel");
    }
    if let (true, Some(interrupted)) = (ok, interrupted) {
        println!();
        println!(
            "The demo keeps running. Try it by hand: type lines, each comes back through the tunnel:"
        );
        println!("  nc {} {}", listen.ip(), listen.port());
        println!("or in one go:");
        println!("  echo hello | nc -q 1 {} {}", listen.ip(), listen.port());
        println!("Press Ctrl-C to stop.");
        let _ = std::io::stdout().flush();
        let _ = interrupted.recv();
        println!("stopping the demo");
    }
    connector.shutdown();
    exposer.shutdown();
    server.shutdown();
    if ok {
        Ok(())
    } else {
        Err(format!("demo failed: sent {LINE:?}, got {reply:?}"))
    }
}

fn registered(node: &Node) -> Result<(), String> {
    for _ in 0..100 {
        if node.control().status()?.registered.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("a daemon did not register within 5 s".into())
}

fn round_trip(listen: SocketAddr) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(listen).map_err(|e| format!("cannot connect to {listen}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{LINE}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| format!("no reply through the tunnel within 10 s: {e}"))?;
    Ok(reply.trim_end().to_string())
}

fn echo_service() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot start the echo service: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut rd = stream.try_clone()?;
                std::io::copy(&mut rd, &mut stream)?;
                stream.shutdown(Shutdown::Write)
            });
        }
    });
    Ok(addr)
}
