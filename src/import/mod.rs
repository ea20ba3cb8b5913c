//! Importers of other tools' analysis configurations into canary profiles. Pure: each
//! turns the other tool's text into profile text and a list of what it could not carry
//! over; the CLI reads and writes the files.

pub mod kayenta;
