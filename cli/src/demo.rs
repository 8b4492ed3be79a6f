//! `burrow demo`: the whole tunnel on one machine, in one process, on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::Config;
use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::ServerConfig;
use burrow_tokio::{Node, NodeConfig, NodeHandle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::{config, keys};

const SERVICE: &str = "/demo/echo";
const LINE: &str = "hello through burrow";

pub async fn run() -> Result<(), String> {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let echo = echo_service().await?;
    println!("1. echo service listening on tcp {echo}");

    let server_key = keys::generate()?;
    let server = Node::spawn(NodeConfig::new(
        Config::server(server_key.clone(), ServerConfig::default()),
        loopback,
    ))
    .map_err(|e| e.to_string())?;
    println!(
        "2. rendezvous server on udp {} (key {})",
        server.udp_addr(),
        server.public_key()
    );

    let rendezvous = RendezvousConfig {
        server_key: server_key.public_key(),
        server_addr: server.udp_addr(),
        token: "demo".into(),
        host_candidates: Vec::new(),
        route: Default::default(),
    };
    let service = config::service(SERVICE)?;
    let mut a = NodeConfig::new(
        Config::daemon(keys::generate()?, rendezvous.clone()),
        loopback,
    );
    a.expose = vec![(service.clone(), echo.to_string())];
    let exposer = Node::spawn(a).map_err(|e| e.to_string())?;
    println!(
        "3. daemon A on udp {} exposes {SERVICE} -> {echo}",
        exposer.udp_addr()
    );

    let mut b = NodeConfig::new(Config::daemon(keys::generate()?, rendezvous), loopback);
    b.connect = vec![(service, loopback)];
    let connector = Node::spawn(b).map_err(|e| e.to_string())?;
    let listen = connector.listeners()[0].1;
    println!(
        "4. daemon B on udp {} listens on tcp {listen} for {SERVICE}",
        connector.udp_addr()
    );

    for node in [&exposer, &connector] {
        registered(node).await?;
    }
    println!("5. both daemons registered with the server");

    let reply = tokio::time::timeout(Duration::from_secs(10), round_trip(listen))
        .await
        .map_err(|_| "no reply through the tunnel within 10 s".to_string())??;
    println!("6. sent {LINE:?} to {listen}, got back {reply:?}");
    let ok = reply == LINE;
    if let Ok(status) = connector.status().await {
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
    connector.shutdown().await;
    exposer.shutdown().await;
    server.shutdown().await;
    if ok {
        println!("demo OK: the line came back through the tunnel");
        Ok(())
    } else {
        Err(format!("demo failed: sent {LINE:?}, got {reply:?}"))
    }
}

async fn registered(node: &NodeHandle) -> Result<(), String> {
    for _ in 0..100 {
        if node
            .status()
            .await
            .map_err(|e| e.to_string())?
            .registered
            .is_some()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("a daemon did not register within 5 s".into())
}

async fn round_trip(listen: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(listen)
        .await
        .map_err(|e| format!("cannot connect to {listen}: {e}"))?;
    stream
        .write_all(format!("{LINE}\n").as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(reply.trim_end().to_string())
}

async fn echo_service() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the echo service: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    Ok(addr)
}
