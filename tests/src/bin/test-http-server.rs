//! A tiny HTTP server for cell tests: listens on 127.0.0.1:$PORT and answers every request with
//! `index=<INSTANCE_INDEX> guid=<INSTANCE_GUID> pid=<pid>`. Extra arguments are ignored (tests
//! pass a marker to find their processes).

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let ip = std::env::var("CF_INSTANCE_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let body = format!(
        "index={} guid={} pid={}",
        std::env::var("INSTANCE_INDEX").unwrap_or_default(),
        std::env::var("INSTANCE_GUID").unwrap_or_default(),
        std::process::id()
    );
    let listener = match TcpListener::bind(format!("{ip}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {ip}:{port}: {e}");
            std::process::exit(2);
        }
    };
    println!("listening on {ip}:{port}");
    for conn in listener.incoming().flatten() {
        let body = body.clone();
        std::thread::spawn(move || {
            let mut conn = conn;
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
}
