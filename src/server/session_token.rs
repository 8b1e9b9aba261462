//! IMDSv2 session tokens, stateless: `<expiry>.<hmac>` where the HMAC-SHA256
//! key is random per start. Nothing is stored per token, so a client that
//! PUTs in a loop costs no memory, and a restart invalidates every token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use parking_lot::RwLock;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The TTL range IMDS accepts, in seconds.
pub const TTL_RANGE: std::ops::RangeInclusive<u64> = 1..=21_600;

/// Accept a token this long after its TTL: the Go SDK caches a token for its
/// full TTL, so its last use can land just after expiry.
const GRACE: Duration = Duration::from_secs(10);

pub struct SessionTokens {
    /// Keyed once: cloning it skips hashing the key for every token.
    mac: HmacSha256,
    /// The last expiry verified and its tag. SDKs present one token for its
    /// whole TTL, so a check is mostly a constant-time compare with this.
    last: RwLock<Option<(u64, [u8; TAG_BYTES])>>,
}

const TAG_BYTES: usize = 32;

impl SessionTokens {
    pub fn new() -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let Ok(mac) = HmacSha256::new_from_slice(&key) else {
            unreachable!("HMAC accepts any key length")
        };
        Ok(SessionTokens {
            mac,
            last: RwLock::new(None),
        })
    }

    pub fn issue(&self, ttl: Duration, now: SystemTime) -> String {
        let expiry = unix_seconds(now + ttl);
        format!("{expiry}.{}", hex::encode(self.sign(expiry)))
    }

    pub fn is_valid(&self, token: &[u8], now: SystemTime) -> bool {
        let Some((expiry, signature)) = split(token) else {
            return false;
        };
        let Some(signature) = unhex(signature) else {
            return false;
        };
        let remembered = *self.last.read();
        let authentic = match remembered {
            Some((seen, tag)) if seen == expiry => tag.ct_eq(&signature).into(),
            _ => {
                let tag = self.sign(expiry);
                let authentic = bool::from(tag.ct_eq(&signature));
                if authentic {
                    *self.last.write() = Some((expiry, tag));
                }
                authentic
            }
        };
        authentic && unix_seconds(now) <= expiry.saturating_add(GRACE.as_secs())
    }

    fn sign(&self, expiry: u64) -> [u8; TAG_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(expiry.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn split(token: &[u8]) -> Option<(u64, &[u8])> {
    let dot = token.iter().position(|&b| b == b'.')?;
    let expiry = std::str::from_utf8(&token[..dot]).ok()?.parse().ok()?;
    Some((expiry, &token[dot + 1..]))
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The tag's hex (either case), or `None` for anything that is not 64 hex digits.
fn unhex(text: &[u8]) -> Option<[u8; TAG_BYTES]> {
    let mut tag = [0u8; TAG_BYTES];
    hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_until_its_ttl_plus_grace() {
        let tokens = SessionTokens::new().expect("key");
        let now = SystemTime::now();
        let token = tokens.issue(Duration::from_secs(300), now);
        assert!(tokens.is_valid(token.as_bytes(), now));
        assert!(tokens.is_valid(token.as_bytes(), now + Duration::from_secs(305)));
        assert!(!tokens.is_valid(token.as_bytes(), now + Duration::from_secs(320)));
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let tokens = SessionTokens::new().expect("key");
        let other = SessionTokens::new().expect("key");
        let now = SystemTime::now();
        let token = tokens.issue(Duration::from_secs(300), now);
        assert!(
            !other.is_valid(token.as_bytes(), now),
            "another start's key"
        );
        let (expiry, signature) = token.split_once('.').expect("dot");
        let stretched = format!("{}.{signature}", expiry.parse::<u64>().expect("n") + 3600);
        assert!(
            !tokens.is_valid(stretched.as_bytes(), now),
            "expiry is signed"
        );
        for junk in ["", ".", "abc", "1.zz", "99999999999.00"] {
            assert!(!tokens.is_valid(junk.as_bytes(), now), "{junk:?}");
        }
    }
}
