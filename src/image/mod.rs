//! Image decoding and preprocessing.
