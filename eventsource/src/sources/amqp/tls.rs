//! The `amqp` source's TLS glue: lapin's connector over a rustls client configuration built by
//! [`crate::tls`] from upstream's `tls` block.
//!
//! The URL must be `amqps://` when `tls` is set: with `amqp://` upstream silently connects in
//! plain text, which is refused here rather than repeated.

use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::{HandshakeResult, RustlsConnector, TcpStream};
use lapin::uri::AMQPUri;
use rustls::ClientConfig;

/// lapin's connect function for `config`: TCP (honouring the URL's `connection_timeout`), then the
/// TLS handshake with the URL's host as the server name.
#[allow(
    clippy::result_large_err,
    reason = "HandshakeResult is the error type lapin's connector signature requires"
)]
pub fn connector(config: Arc<ClientConfig>) -> Box<dyn Fn(&AMQPUri) -> HandshakeResult + Send + Sync> {
    let tls = RustlsConnector::from(config);
    Box::new(move |uri: &AMQPUri| {
        let address = (uri.authority.host.as_str(), uri.authority.port);
        let stream = match uri.query.connection_timeout {
            Some(ms) => TcpStream::connect_timeout(address, Duration::from_millis(ms)),
            None => TcpStream::connect(address),
        }?;
        let stream = stream.into_rustls(&tls, &uri.authority.host)?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    })
}
