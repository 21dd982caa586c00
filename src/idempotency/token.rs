//! [`ClientToken`]: the client's idempotency token, validated (1 to 64 printable ASCII characters,
//! case-sensitive) and reduced to the 64-bit key the store and the traffic use.

use super::{FNV_OFFSET, fnv1a64, splitmix64};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The longest token ECS accepts, in characters (all ASCII, so also in bytes).
pub const MAX_TOKEN_LEN: usize = 64;

/// A client token: 1 to [`MAX_TOKEN_LEN`] printable ASCII characters (`0x20..=0x7E`, space
/// included), compared case-sensitively (`"Abc"` and `"abc"` are different tokens).
///
/// A token is identified by its 64-bit key ([`ClientToken::as_u64`], never 0): the FNV-1a hash of
/// its bytes through a SplitMix64 finaliser, written out in this module so the mapping can never
/// drift. The traffic carries only that key (`Request::client_token`, 0 = no token), so a token
/// can also be made from a key alone ([`ClientToken::from_hash`]); it then has no text.
///
/// Equality and ordering compare the keys (what the store compares): a parsed token equals the
/// hash-only token made from its key.
#[derive(Clone, Copy)]
pub struct ClientToken {
    hash: u64,
    /// Text length in bytes; 0 for a hash-only token.
    len: u8,
    text: [u8; MAX_TOKEN_LEN],
}

/// Why a string is not a valid client token; each variant says what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("empty ClientToken: give 1 to 64 printable ASCII characters")]
    Empty,
    #[error("ClientToken is {len} characters long: at most 64 are allowed")]
    TooLong { len: usize },
    #[error(
        "ClientToken has the non-ASCII character {ch:?} at position {pos}: only printable ASCII \
         (space to `~`) is allowed"
    )]
    NotAscii { pos: usize, ch: char },
    #[error(
        "ClientToken has the control character 0x{byte:02x} at position {pos}: only printable \
         ASCII (space to `~`) is allowed"
    )]
    Control { pos: usize, byte: u8 },
}

impl ClientToken {
    /// The token whose key is `hash` (as `Request::client_token` carries it); `None` for 0, which
    /// means "no token".
    pub const fn from_hash(hash: u64) -> Option<ClientToken> {
        if hash == 0 {
            return None;
        }
        Some(ClientToken {
            hash,
            len: 0,
            text: [0; MAX_TOKEN_LEN],
        })
    }

    /// The 64-bit key of the token (never 0): what [`super::IdemKey::token`] and
    /// `Request::client_token` hold.
    pub const fn as_u64(&self) -> u64 {
        self.hash
    }

    /// The token's text, or `None` for a token made by [`ClientToken::from_hash`].
    pub fn as_str(&self) -> Option<&str> {
        if self.len == 0 {
            return None;
        }
        // Validated printable ASCII on construction, so always UTF-8.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).ok()
    }

    /// The key of a token text (the text is not validated here; [`FromStr`] does that).
    pub fn hash_text(text: &str) -> u64 {
        match splitmix64(fnv1a64(FNV_OFFSET, text.as_bytes())) {
            // 0 means "no token": move the one text that would hash there (odds 2^-64).
            0 => 1,
            h => h,
        }
    }
}

impl FromStr for ClientToken {
    type Err = TokenError;

    /// Validates `s` exactly as given (no trimming: a leading or trailing space is part of the
    /// token). The characters are checked before the length, so a long non-ASCII string is
    /// reported for its first bad character.
    fn from_str(s: &str) -> Result<ClientToken, TokenError> {
        if s.is_empty() {
            return Err(TokenError::Empty);
        }
        for (pos, ch) in s.chars().enumerate() {
            if !ch.is_ascii() {
                return Err(TokenError::NotAscii { pos, ch });
            }
            if !(' '..='~').contains(&ch) {
                return Err(TokenError::Control {
                    pos,
                    byte: ch as u8,
                });
            }
        }
        let bytes = s.as_bytes();
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { len: bytes.len() });
        }
        let mut text = [0u8; MAX_TOKEN_LEN];
        text[..bytes.len()].copy_from_slice(bytes);
        Ok(ClientToken {
            hash: ClientToken::hash_text(s),
            len: bytes.len() as u8,
            text,
        })
    }
}

impl PartialEq for ClientToken {
    fn eq(&self, other: &ClientToken) -> bool {
        self.hash == other.hash
    }
}
impl Eq for ClientToken {}
impl PartialOrd for ClientToken {
    fn partial_cmp(&self, other: &ClientToken) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ClientToken {
    fn cmp(&self, other: &ClientToken) -> Ordering {
        self.hash.cmp(&other.hash)
    }
}

impl fmt::Display for ClientToken {
    /// The text, or `#` and the key in hex for a hash-only token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "#{:016x}", self.hash),
        }
    }
}

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "ClientToken({s:?}, #{:016x})", self.hash),
            None => write!(f, "ClientToken(#{:016x})", self.hash),
        }
    }
}
