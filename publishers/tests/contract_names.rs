//! The names `framebus::contract::encoder` lists (checked by the
//! supervisor's config) are the ones `framebus-encoder` accepts.

use clap::ValueEnum;
use framebus::contract::encoder;
use framebus_publishers::encoder::EncoderKind;

#[test]
fn contract_encoder_names_are_the_encoders() {
    let ours: Vec<String> = EncoderKind::value_variants()
        .iter()
        .filter_map(|k| k.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect();
    assert_eq!(
        ours,
        encoder::ENCODERS,
        "contract::encoder::ENCODERS drifted"
    );
}

#[test]
fn encoded_bus_name_is_the_contract() {
    assert_eq!(
        framebus_publishers::encoder::encoded_bus_name("cam0", "high"),
        encoder::bus_name("cam0", "high")
    );
}
