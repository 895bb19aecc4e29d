//! The codec every `capstan.v1` service and client is generated with: prost's, with smaller
//! per-call buffers.
//!
//! tonic gives each call (and each message of a stream) an encode and a decode buffer of 8 KiB to
//! start with. A leader serving a fleet holds one assignment stream per cell for as long as the
//! cell lives: at 5,000 cells the encode buffers alone came to 41 MB of heap. Most of Capstan's
//! messages are far smaller than 8 KiB (a delta of one instance, a heartbeat); a larger one grows
//! its buffer to its encoded length, as before.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Bytes each call's encode and decode buffers start with (tonic's default: 8 KiB).
pub const CODEC_BUFFER_BYTES: usize = 1024;
/// Bytes a stream encodes before it yields to the runtime (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

/// prost's codec with [`CODEC_BUFFER_BYTES`] buffers.
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

#[cfg(test)]
mod tests {
    use tonic::codec::{Decoder, Encoder};

    use super::*;
    use crate::pb;

    #[test]
    fn its_coders_start_small() {
        let mut c = LeanCodec::<pb::Assignments, pb::Cell>::default();
        let small = settings();
        assert_eq!(format!("{:?}", c.encoder().buffer_settings()), format!("{small:?}"));
        assert_eq!(format!("{:?}", c.decoder().buffer_settings()), format!("{small:?}"));
        assert_ne!(format!("{small:?}"), format!("{:?}", BufferSettings::default()));
    }

    #[test]
    fn every_generated_service_and_client_uses_it() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/capstan.v1.rs"));
        assert!(generated.contains("crate::codec::LeanCodec::default()"));
        assert!(!generated.contains("ProstCodec"));
    }
}
