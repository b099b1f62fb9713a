//! TLS to a RouterOS router: rustls with the `ring` provider, and a
//! certificate verifier that accepts exactly one certificate, the one whose
//! SHA-256 (of its DER encoding) the plan pins. No CA, no name check: the
//! router's self-signed certificate is trusted by its fingerprint alone.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Lowercase hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// Accepts the one certificate whose fingerprint is `expected`.
#[derive(Debug)]
pub struct Pinned {
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    /// A verifier for `expected` (lowercase hex, no separators).
    pub fn new(expected: &str) -> Pinned {
        Pinned {
            expected: expected.to_ascii_lowercase(),
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity.as_ref());
        if got == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the router's certificate has fingerprint {got}, the plan pins {}",
                self.expected
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration that trusts only the pinned certificate.
pub fn client_config(fingerprint: &str) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned::new(fingerprint)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> CertificateDer<'static> {
        let c = rcgen::generate_simple_self_signed(vec!["router.lan".into()]).unwrap();
        c.cert.der().clone()
    }

    #[test]
    fn only_the_pinned_certificate_is_accepted() {
        let der = cert();
        let fp = fingerprint(der.as_ref());
        assert_eq!(fp.len(), 64);
        let name = ServerName::try_from("192.168.88.1").unwrap();
        let ok = Pinned::new(&fp.to_uppercase()).verify_server_cert(&der, &[], &name, &[], UnixTime::now());
        assert!(ok.is_ok());

        let other = cert();
        let e = Pinned::new(&fp)
            .verify_server_cert(&other, &[], &name, &[], UnixTime::now())
            .unwrap_err()
            .to_string();
        let got = fingerprint(other.as_ref());
        assert!(
            e.contains(&format!("fingerprint {got}")) && e.contains(&format!("pins {fp}")),
            "{e}"
        );
    }
}
