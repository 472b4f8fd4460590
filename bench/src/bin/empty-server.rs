//! The reference for HTTP figures: an actix-web server whose only handler returns an empty 200,
//! with the same worker count as sigil. `empty-server [ADDR]` prints `listening on ADDR`.

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let server = HttpServer::new(|| App::new().default_service(web::to(|| async { HttpResponse::Ok().finish() })))
        .bind(addr)?;
    for a in server.addrs() {
        println!("listening on {a}");
    }
    server.run().await
}
