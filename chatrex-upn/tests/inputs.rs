//! UPN with unusual images, batches, threads, and broken checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::image::{ImageLimits, RgbImage, load_rgb};
use chatrex_common::parity::{repo_fixtures, shared_fixtures, test_device};
use chatrex_common::weights::{PytorchCheckpoint, TensorSource, WeightDType, open_checkpoint};
use chatrex_upn::{PromptType, Proposals, Upn, UpnConfig, UpnError};
use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn upn_dir() -> PathBuf {
    shared_fixtures().unwrap().join("upn")
}

fn config() -> UpnConfig {
    UpnConfig::from_file(&upn_dir().join("config.json")).unwrap()
}

fn model() -> Upn {
    Upn::load(&upn_dir().join("upn_tiny.pth"), &config(), &test_device()).unwrap()
}

fn image(name: &str) -> RgbImage {
    load_rgb(&repo_fixtures().join("images").join(name), &ImageLimits::default()).unwrap()
}

fn assert_same(a: &Proposals, b: &Proposals, tol: f32) {
    assert_eq!(a.image, b.image);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.proposals.iter().zip(&b.proposals) {
        assert_eq!(x.query, y.query);
        assert!((x.score - y.score).abs() <= tol);
        assert!(x.bbox.iter().zip(y.bbox).all(|(p, q)| (p - q).abs() <= tol * 2000.0));
    }
}

#[test]
fn unusual_images_give_proposals() {
    let upn = model();
    for name in ["gray.jpg", "cmyk.jpg", "rgba.png", "palette.png", "gray16.png", "one_pixel.png", "tall_3x2000.png"] {
        let img = image(name);
        let out = upn.propose(std::slice::from_ref(&img), PromptType::Fine).unwrap().remove(0);
        assert!(!out.is_empty(), "{name}");
        assert_eq!((out.image.width, out.image.height), (img.width(), img.height()));
        assert!(out.proposals.iter().all(|p| p.score.is_finite() && p.bbox.iter().all(|v| v.is_finite())), "{name}");
        // Nothing surviving a filter is an empty list, not an error.
        assert!(out.filter(1.1, 0.8).is_empty());
    }
    assert!(matches!(upn.propose(&[], PromptType::Fine), Err(UpnError::Request(_))));
}

#[test]
fn batches_threads_and_repeats_agree_with_single_runs() {
    let upn = Arc::new(model());
    let photo = load_rgb(&upn_dir().join("test_upn.jpeg"), &ImageLimits::default()).unwrap();
    let small = image("rgb.png");
    let flipped = image::imageops::flip_horizontal(&small);
    let singles: Vec<Proposals> = [&small, &flipped, &photo]
        .iter()
        .map(|i| upn.propose(std::slice::from_ref(*i), PromptType::Coarse).unwrap().remove(0))
        .collect();
    // Same-size images run as one batch; the result per image is the single-image one.
    let batch = upn.propose(&[small.clone(), flipped.clone(), photo.clone()], PromptType::Coarse).unwrap();
    for (b, s) in batch.iter().zip(&singles) {
        assert_same(b, s, 1e-5);
    }
    // Repeats are bit-identical on the CPU backend.
    let again = upn.propose(std::slice::from_ref(&small), PromptType::Coarse).unwrap().remove(0);
    assert_eq!(again, singles[0]);
    // Concurrent requests from threads give the same answers.
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let upn = upn.clone();
            let img = [small.clone(), flipped.clone(), photo.clone()][i].clone();
            std::thread::spawn(move || upn.propose(&[img], PromptType::Coarse).unwrap().remove(0))
        })
        .collect();
    for (h, s) in handles.into_iter().zip(&singles) {
        assert_eq!(&h.join().unwrap(), s);
    }
}

/// Largest differences between two proposal lists of the same image: (score, box in pixels).
fn max_differences(a: &Proposals, b: &Proposals) -> (f32, f32) {
    a.proposals.iter().zip(&b.proposals).fold((0f32, 0f32), |(ds, db), (x, y)| {
        let box_diff = x.bbox.iter().zip(y.bbox).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        (ds.max((x.score - y.score).abs()), db.max(box_diff))
    })
}

#[test]
fn mixed_sizes_share_one_padded_batch_with_single_run_results() {
    let upn = model();
    let photo = load_rgb(&upn_dir().join("test_upn.jpeg"), &ImageLimits::default()).unwrap();
    // Preprocessed (w × h): 1066×800, 1130×800, 800×800, 800×1130, 2×1333 — the padded batch
    // is 1130×1333, so every image is padded in width, height or both.
    let images = [
        image("rgb.png"),
        photo.clone(),
        image("one_pixel.png"),
        image::imageops::rotate90(&photo),
        image("tall_3x2000.png"),
    ];
    // With the coarse prompt the invalid tokens' constant logit ranks among the top queries of
    // the 2×1333 image: padded tokens, which share it, must not take their places.
    let exact = chatrex_common::device::is_host_cpu(&test_device());
    for (prompt, images) in [(PromptType::Fine, &images[..]), (PromptType::Coarse, &[images[0].clone(), images[4].clone()][..])] {
        let batch = upn.propose(images, prompt).unwrap();
        for (img, b) in images.iter().zip(&batch) {
            let single = upn.propose(std::slice::from_ref(img), prompt).unwrap().remove(0);
            let (score, bbox) = max_differences(b, &single);
            println!("{prompt:?} {}x{}: max |Δscore| {score:.2e}, max |Δbox| {bbox:.2e} px", img.width(), img.height());
            // The CPU sampler uses the single-run arithmetic: bit-identical. Other backends
            // rescale locations to the padded maps for `grid_sample`: equal up to rounding
            // (lavapipe, three of these images: ≤ 1.4e-5 on scores, same order).
            if exact {
                assert_eq!(b, &single);
            } else {
                assert_same(b, &single, 1e-4);
            }
        }
    }
}

#[test]
fn images_with_fewer_tokens_than_queries_run_in_their_own_batch() {
    // 1000 queries: the 2×1333 image has only 648 memory tokens, so it gets 648 queries and
    // cannot share a padded batch with the others; `propose` splits, `forward_padded` refuses.
    let mut config = config();
    config.num_queries = 1000;
    let upn = Upn::random(&config, &test_device(), WeightDType::F32, 7).unwrap();
    let images = [image("tall_3x2000.png"), image("rgb.png"), image("one_pixel.png")];
    let batch = upn.propose(&images, PromptType::Fine).unwrap();
    assert_eq!(batch.iter().map(Proposals::len).collect::<Vec<_>>(), vec![648, 1000, 1000]);
    for (img, b) in images.iter().zip(&batch) {
        assert_same(b, &upn.propose(std::slice::from_ref(img), PromptType::Fine).unwrap().remove(0), 1e-5);
    }
    let inputs: Vec<_> = images[..2]
        .iter()
        .map(|i| chatrex_upn::preprocess::preprocess(i, &test_device()))
        .collect();
    assert!(matches!(upn.forward_padded(&inputs, PromptType::Fine), Err(UpnError::Request(_))));
    assert!(matches!(upn.forward_padded(&[], PromptType::Fine), Err(UpnError::Request(_))));
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn upn_is_send_and_sync() {
    assert_send_sync::<Upn>();
}

/// Writes the tensors of the official .pth as safetensors (aliases stored once), with edits.
fn write_safetensors(path: &Path, drop: Option<&str>, extra: bool, reshape: Option<&str>) {
    let source = PytorchCheckpoint::open(&upn_dir().join("upn_tiny.pth"), Some("model")).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = Vec::new();
    for name in source.names() {
        if Some(name.as_str()) == drop || name.starts_with("bbox_embed.") || name.starts_with("transformer.decoder.bbox_embed.1") {
            continue;
        }
        let info = source.info(&name).unwrap();
        let bytes = source.read(&name).unwrap().into_owned();
        let dtype = if info.dtype.to_string() == "I64" { Dtype::I64 } else { Dtype::F32 };
        let mut shape = info.shape.clone();
        if Some(name.as_str()) == reshape {
            shape = vec![shape.iter().product()];
        }
        tensors.push((name, shape, bytes, dtype));
    }
    if extra {
        tensors.push(("transformer.surprise".into(), vec![2], vec![0; 8], Dtype::F32));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b, d)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn checkpoint_problems_are_named_and_safetensors_loads() {
    let dir = std::env::temp_dir().join(format!("chatrex-upn-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let device = test_device();
    // The same weights as safetensors (shared box head stored once) give the same proposals.
    let ok = dir.join("upn.safetensors");
    write_safetensors(&ok, None, false, None);
    let from_st = Upn::load(&ok, &config(), &device).unwrap();
    let img = image("rgb.png");
    assert_eq!(
        from_st.propose(std::slice::from_ref(&img), PromptType::Fine).unwrap(),
        model().propose(&[img], PromptType::Fine).unwrap()
    );
    // Missing, extra and mis-shaped keys are all named.
    let bad = dir.join("bad.safetensors");
    write_safetensors(&bad, Some("transformer.level_embed"), true, Some("input_proj.2.0.weight"));
    let err = Upn::load(&bad, &config(), &device).unwrap_err().to_string();
    for key in ["transformer.level_embed", "transformer.surprise", "input_proj.2.0.weight"] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }
    // A checkpoint for another config.
    let mut other = config();
    other.d_model = 96;
    assert!(Upn::load(&upn_dir().join("upn_tiny.pth"), &other, &device).is_err());
    // Garbage and empty files.
    let junk = dir.join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    assert!(Upn::load(&junk, &config(), &device).is_err());
    assert!(open_checkpoint(&dir.join("missing.pth"), None).is_err());
    let _ = WeightDType::F32;
    let _ = std::fs::remove_dir_all(&dir);
}
