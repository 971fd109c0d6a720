//! Standard Webhooks signatures: `webhook-signature` is `v1,` + the standard base64 of
//! HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the secret's key; several
//! space-separated signatures are allowed, which is how a rotation keeps the old secret valid
//! for a while. `webhook-id` stays the same on every retry, `webhook-timestamp` is each
//! attempt's. Sign the exact bytes that are sent.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::{BadSecret, Secret};

/// The three headers of a delivery.
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

fn mac(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>, BadSecret> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.key()?).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The `webhook-signature` value: one `v1,<sig>` per secret (current first), space-separated.
pub fn signature(
    secrets: &[&Secret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let mut out = String::new();
    for secret in secrets {
        let tag = mac(secret, id, timestamp, body)?.finalize().into_bytes();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        out.push_str(&STANDARD.encode(tag));
    }
    Ok(out)
}

/// Whether `header` carries a valid `v1` signature of this message by `secret`, compared in
/// constant time: what a receiver does (the tests' receivers use it).
pub fn verify(secret: &Secret, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|part| {
        let Some(b64) = part.strip_prefix("v1,") else {
            return false;
        };
        let (Ok(tag), Ok(mac)) = (STANDARD.decode(b64), mac(secret, id, timestamp, body)) else {
            return false;
        };
        mac.verify_slice(&tag).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification, as its reference libraries test it.
    #[test]
    fn matches_the_specifications_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            signature(&[&secret], id, ts, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(verify(
            &secret,
            id,
            ts,
            body,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!verify(
            &secret,
            id,
            ts + 1,
            body,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
    }

    #[test]
    fn during_a_rotation_both_secrets_verify() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let header = signature(&[&new, &old], "evt_1", 10, b"{}").unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&new, "evt_1", 10, b"{}", &header));
        assert!(verify(&old, "evt_1", 10, b"{}", &header));
        assert!(!verify(&Secret::generate(), "evt_1", 10, b"{}", &header));
        assert!(
            !verify(&new, "evt_1", 10, b"{} ", &header),
            "the exact bytes"
        );
    }
}
