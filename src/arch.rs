//! `--arch`: a model written as a short spec, e.g. the tutorial CNN is
//!
//! `c16k5 relu pool2 c32k5 relu c32k5 relu pool2 c64k5 relu flat fc10`
//!
//! Tokens, separated by spaces or commas:
//! - `c<OUT>k<K>[s<S>][p<P>]`: Conv2d with OUT channels, K×K kernel, stride S (1),
//!   padding P (K/2, "same" for odd K); input channels come from the previous layer;
//! - `relu`; `pool<K>[s<S>]`: MaxPool2d, stride S (K); `flat`: Flatten;
//! - `fc<OUT>`: Linear with OUT outputs, input features from the flattened shape.
//!
//! Parameter names follow `nn.Sequential`: `layers.<i>.weight`; a spec that spells
//! the tutorial CNN gets its PyTorch names (`conv1.0.weight`, …).

use anyhow::{anyhow, bail, Context, Result};

use crate::model::{Layer, Model, Shape, MAX_LAYERS};

pub const TUTORIAL_SPEC: &str = "c16k5 relu pool2 c32k5 relu c32k5 relu pool2 c64k5 relu flat fc10";

/// `s` cut to `max` characters with "…" and its length, for an error message: specs,
/// metadata and the errors that quote them come from files and may be megabytes long.
pub fn shortened(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}… ({} bytes)", &s[..cut], s.len()),
        None => s.to_string(),
    }
}

/// A user's string in single quotes, at most 80 characters of it.
pub fn quoted(s: &str) -> String {
    format!("'{}'", shortened(s, 80))
}

/// Parse `--arch`'s `spec` for inputs of `input` shape; shape errors name the layer.
pub fn parse(spec: &str, input: Shape) -> Result<Model> {
    parse_named(spec, input, "--arch")
}

/// `parse` for a spec that errors call `name` ("metadata 'gpu_cnn.arch'"): a bad
/// checkpoint must not be blamed on a flag the user never gave.
pub fn parse_named(spec: &str, input: Shape, name: &str) -> Result<Model> {
    // Checked first: the loop below counts the input's elements.
    input.check_input().with_context(|| format!("{name} {}", quoted(spec)))?;
    let mut layers = Vec::new();
    let mut shape = input;
    for (i, tok) in spec.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).enumerate() {
        if i == MAX_LAYERS {
            bail!("{name} has more than {MAX_LAYERS} layers");
        }
        let at = || format!("{name} layer {} {} (input {shape})", i + 1, quoted(tok));
        let layer = parse_token(tok, shape.c, shape.numel()).with_context(at)?;
        shape = layer.output_shape(shape).with_context(at)?;
        layers.push((format!("layers.{i}"), layer));
    }
    if layers.is_empty() {
        bail!("{name} is empty; the tutorial CNN is '{TUTORIAL_SPEC}'");
    }
    let model = Model::new(input, layers).with_context(|| format!("{name} {}", quoted(spec)))?;
    let tutorial = Model::tutorial();
    if input == tutorial.input && model.layers.iter().map(|l| l.layer).eq(tutorial.layers.iter().map(|l| l.layer)) {
        return Ok(tutorial);
    }
    Ok(model)
}

fn number(s: &str, what: &str) -> Result<usize> {
    s.parse::<usize>()
        .map_err(|_| anyhow!("expected a number (at most {}) for {what}, found {}", usize::MAX, quoted(s)))
}

/// Split `c16k5s1p2` after its prefix into the values tagged by `tags` (in order, each optional
/// except the first, which is untagged).
fn tagged(body: &str, tags: &[char]) -> Result<Vec<Option<usize>>> {
    let mut out = vec![None; tags.len() + 1];
    let mut cur = 0usize;
    let mut digits = String::new();
    for ch in body.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
        } else if let Some(pos) = tags.iter().position(|&t| t == ch) {
            if pos < cur {
                bail!("'{ch}' is out of order or repeated");
            }
            out[cur] = Some(number(&digits, "a value")?);
            digits.clear();
            cur = pos + 1;
        } else {
            bail!("unexpected '{ch}'");
        }
    }
    out[cur] = Some(number(&digits, "a value")?);
    Ok(out)
}

fn parse_token(tok: &str, channels: usize, flat: usize) -> Result<Layer> {
    let t = tok.to_ascii_lowercase();
    Ok(match t.as_str() {
        "relu" => Layer::Relu,
        "flat" | "flatten" => Layer::Flatten,
        _ if t.starts_with("pool") => {
            let v = tagged(&t[4..], &['s'])?;
            let kernel = v[0].unwrap();
            Layer::MaxPool2d { kernel, stride: v[1].unwrap_or(kernel) }
        }
        _ if t.starts_with("fc") => Layer::Linear { in_features: flat, out_features: number(&t[2..], "fc's outputs")? },
        _ if t.starts_with('c') => {
            let v = tagged(&t[1..], &['k', 's', 'p'])?;
            let kernel = v[1].ok_or_else(|| anyhow!("a conv needs a kernel size, e.g. c16k5"))?;
            Layer::Conv2d {
                in_ch: channels,
                out_ch: v[0].unwrap(),
                kernel,
                stride: v[2].unwrap_or(1),
                padding: v[3].unwrap_or(kernel / 2),
            }
        }
        _ => bail!("unknown layer; expected c<OUT>k<K>[s<S>][p<P>], relu, pool<K>[s<S>], flat or fc<OUT>"),
    })
}

/// The canonical spec of a model (recorded in checkpoints so `--arch` models reload).
pub fn spec_of(model: &Model) -> String {
    model
        .layers
        .iter()
        .map(|l| match l.layer {
            Layer::Conv2d { out_ch, kernel, stride, padding, .. } => format!("c{out_ch}k{kernel}s{stride}p{padding}"),
            Layer::Relu => "relu".into(),
            Layer::MaxPool2d { kernel, stride } => format!("pool{kernel}s{stride}"),
            Layer::Flatten => "flat".into(),
            Layer::Linear { out_features, .. } => format!("fc{out_features}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist() -> Shape {
        Shape::image(1, 28, 28)
    }

    #[test]
    fn tutorial_spec_is_the_tutorial_model() {
        let m = parse(TUTORIAL_SPEC, mnist()).unwrap();
        assert_eq!(m, Model::tutorial());
        assert_eq!(parse(&spec_of(&m), mnist()).unwrap(), m);
    }

    #[test]
    fn a_user_can_add_a_conv_layer() {
        let m = parse("c16k5 relu pool2 c32k5 relu c32k5 relu c32k3 relu pool2 c64k5 relu flat fc10", mnist()).unwrap();
        assert_eq!(m.params[6].name, "layers.7.weight");
        assert_eq!(m.params[6].shape, vec![32, 32, 3, 3]);
        assert_eq!(m.classes(), 10);
        assert_eq!(parse(&spec_of(&m), mnist()).unwrap(), m);
    }

    #[test]
    fn bad_specs_name_the_layer() {
        let e = format!("{:#}", parse("c8k5 pool2 pool2 pool2 pool2 pool2 flat fc10", mnist()).unwrap_err());
        assert!(e.contains("pool2") && e.contains("larger"), "{e}");
        let e = format!("{:#}", parse("c8k5 relu conv9", mnist()).unwrap_err());
        assert!(e.contains("layer 3") && e.contains("conv9"), "{e}");
        let e = format!("{:#}", parse("c8k5 relu", mnist()).unwrap_err());
        assert!(e.contains("must end in a Linear"), "{e}");
        let e = format!("{:#}", parse("c8k40p0 flat fc10", mnist()).unwrap_err());
        assert!(e.contains("28x28") || e.contains("larger"), "{e}");
        let e = format!("{:#}", parse("flat c8k3 fc10", mnist()).unwrap_err());
        assert!(e.contains("flattened"), "{e}");
        let e = format!("{:#}", parse("flat", mnist()).unwrap_err());
        assert!(e.contains("must end in a Linear"), "{e}");
    }

    #[test]
    fn huge_numbers_are_refused_not_wrapped() {
        for (spec, layer, want) in [
            ("c4294967296k1 flat fc10", "layer 1", "2^28"),
            ("c1k1p9223372036854775807 flat fc10", "layer 1", "at most 4096"),
            ("c1k4097 flat fc10", "layer 1", "at most 4096"),
            ("pool1s18446744073709551615 flat fc10", "layer 1", "at most 4096"),
            ("pool1s18446744073709551616 flat fc10", "layer 1", "expected a number"),
            ("c4k1 flat fc100000", "layer 2 (layers.2", "2^28) parameters"),
            ("flat fc300000000", "layer 2", "2^28"),
        ] {
            let e = format!("{:#}", parse(spec, mnist()).unwrap_err());
            assert!(e.contains(layer) && e.contains(want), "{spec}: {e}");
        }
        let e = format!("{:#}", parse("relu", Shape::image(1, 100_000, 100_000)).unwrap_err());
        assert!(e.contains("1x100000x100000") && e.contains("4096"), "{e}");
    }

    #[test]
    fn long_specs_are_quoted_short() {
        let long = format!("c8k3 {}x flat fc10", "relu".repeat(1_000_000));
        let e = format!("{:#}", parse(&long, mnist()).unwrap_err());
        assert!(e.len() < 400 && e.contains("layer 2") && e.contains("…") && e.contains("4000001 bytes"), "{e}");
        let many = "relu ".repeat(MAX_LAYERS + 1);
        let e = format!("{:#}", parse(&many, mnist()).unwrap_err());
        assert!(e.len() < 400 && e.contains("more than 1024 layers"), "{e}");
        assert_eq!(quoted("fc10"), "'fc10'");
        assert_eq!(quoted(&"é".repeat(81)), format!("'{}… (162 bytes)'", "é".repeat(80)));
    }
}
