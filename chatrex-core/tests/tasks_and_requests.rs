//! Every task's exact prompt and ids (expected values written independently in
//! tools/reference/tokenizer_cases.py), and every bad request is a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::image::{ImageLimits, RgbImage, load_rgb};
use chatrex_common::parity::{repo_fixtures, shared_fixtures, test_device};
use chatrex_core::processor::build_prompt;
use chatrex_core::tasks::RegionStyle;
use chatrex_core::{AnswerOptions, ChatRex, ChatRexError, LoadOptions, ProposalBox, Task};
use chatrex_llm::GenerationOptions;
use serde_json::Value;
use std::sync::{Arc, OnceLock};

fn model() -> &'static ChatRex {
    static MODEL: OnceLock<ChatRex> = OnceLock::new();
    MODEL.get_or_init(|| ChatRex::load(&shared_fixtures().unwrap().join("mllm/tiny"), &LoadOptions::default(), &test_device()).unwrap())
}

fn image() -> RgbImage {
    load_rgb(&shared_fixtures().unwrap().join("mllm/test_chatrex_install.jpg"), &ImageLimits::default()).unwrap()
}

fn boxes(k: usize) -> Vec<ProposalBox> {
    (0..k)
        .map(|i| ProposalBox { bbox: [10.0 + i as f32, 20.0, 200.0, 180.0 + i as f32], score: Some(0.9) })
        .collect()
}

fn short() -> AnswerOptions {
    AnswerOptions { generation: GenerationOptions { max_new_tokens: 6, ..Default::default() }, ..Default::default() }
}

#[test]
fn every_task_sends_the_official_prompt() {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(repo_fixtures().join("tokenizers/task_prompts.json")).unwrap()).unwrap();
    let tasks = [
        ("detect", Task::Detect(vec!["person".into(), " pigeon ".into()])),
        ("refer", Task::Refer("the man in a red coat".into())),
        ("count", Task::Count("pigeon".into())),
        ("caption_brief", Task::Caption { detailed: false }),
        ("caption_detailed", Task::Caption { detailed: true }),
        ("region_category", Task::Region(RegionStyle::Category)),
        ("region_phrase", Task::Region(RegionStyle::Phrase)),
        ("region_brief", Task::Region(RegionStyle::Brief)),
        ("region_sentence", Task::Region(RegionStyle::Sentence)),
        ("ask", Task::Ask("what might be the species of <obj1>?".into())),
        ("chat", Task::Chat("What is the person holding?".into())),
    ];
    let m = model();
    for (name, task) in tasks {
        let case = &cases[name];
        let question = task.question(3).unwrap();
        assert_eq!(question, case["question"].as_str().unwrap(), "{name}: question");
        let prompt = build_prompt(m.template(), m.tokenizer(), &[], 3, &question).unwrap();
        assert_eq!(prompt.text, case["prompt"].as_str().unwrap(), "{name}: prompt text");
        let ids: Vec<i64> = case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(prompt.input_ids, ids, "{name}: ids");
        // And the request actually runs with these boxes.
        let answer = m.run_task(&image(), &task, Some(boxes(3)), None, &short()).unwrap();
        assert_eq!(answer.input_ids, ids, "{name}: ids sent");
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let m = model();
    let img = image();
    let run = |task: Task, b: Vec<ProposalBox>| m.run_task(&img, &task, Some(b), None, &short());
    assert!(matches!(run(Task::Detect(vec![]), boxes(2)), Err(ChatRexError::Request(_))));
    assert!(matches!(run(Task::Detect(vec![" ".into(), ";".into()]), boxes(2)), Err(ChatRexError::Request(_))));
    assert!(matches!(run(Task::Refer("  ".into()), boxes(2)), Err(ChatRexError::Request(_))));
    assert!(matches!(run(Task::Ask("".into()), boxes(2)), Err(ChatRexError::Request(_))));
    assert!(matches!(run(Task::Caption { detailed: false }, vec![]), Err(ChatRexError::NoProposals(_))));
    assert!(matches!(run(Task::Caption { detailed: false }, boxes(101)), Err(ChatRexError::Request(_))));
    for bad in [[f32::NAN, 0.0, 1.0, 1.0], [0.0, 0.0, f32::INFINITY, 1.0], [50.0, 10.0, 20.0, 40.0]] {
        let r = run(Task::Caption { detailed: false }, vec![ProposalBox { bbox: bad, score: None }]);
        assert!(matches!(r, Err(ChatRexError::Encoder(_))), "{bad:?}: {r:?}");
    }
    // Boxes partly or wholly outside the image are valid (RoIAlign samples zeros there).
    assert!(run(Task::Caption { detailed: false }, vec![ProposalBox { bbox: [-50.0, -20.0, 30.0, 900.0], score: None }]).is_ok());
    // Region captions need the caller's boxes; without UPN, other tasks need proposals.
    assert!(matches!(m.run_task(&img, &Task::Region(RegionStyle::Brief), None, None, &short()), Err(ChatRexError::NoProposals(_))));
    assert!(matches!(m.run_task(&img, &Task::Caption { detailed: true }, None, None, &short()), Err(ChatRexError::NoProposals(_))));
    // A prompt longer than the model's context.
    let long = "word ".repeat(3000);
    let r = run(Task::Ask(long), boxes(1));
    assert!(matches!(r, Err(ChatRexError::Request(ref msg)) if msg.contains("tokenizer_model_max_length")), "{r:?}");
    // max_new_tokens 0: an empty answer, not an error.
    let zero = AnswerOptions { generation: GenerationOptions { max_new_tokens: 0, ..Default::default() }, ..Default::default() };
    let a = m.answer(&img, &boxes(2), "hi", &zero).unwrap();
    assert!(a.text.is_empty() && a.generation.ids.is_empty());
}

#[test]
fn answers_are_deterministic_and_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatRex>();
    let m = model();
    let img = Arc::new(image());
    let question = "Please detect dog; bed in this image. Answer the question with object indexes.";
    let first = m.answer(&img, &boxes(4), question, &short()).unwrap();
    let second = m.answer(&img, &boxes(4), question, &short()).unwrap();
    assert_eq!(first.generation, second.generation);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let img = img.clone();
            std::thread::spawn(move || model().answer(&img, &boxes(4), question, &short()).unwrap().generation)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), first.generation);
    }
}

#[test]
fn conversations_carry_history() {
    let m = model();
    let mut conv = m.conversation(&image(), &boxes(2)).unwrap();
    let mut streamed = String::new();
    let a1 = conv.ask("What is <obj0>?", &short(), &mut |t| streamed.push_str(t)).unwrap();
    assert_eq!(streamed, a1.text, "streamed text equals the answer");
    let a2 = conv.ask("And <obj1>?", &short(), &mut |_| {}).unwrap();
    assert_eq!(conv.history().len(), 2);
    assert!(a2.prompt.starts_with(&format!("<|im_start|>user\n<image>\n<obj0><objfeat><obj1><objfeat>\nWhat is <obj0>?<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n", a1.text)));
    assert!(a2.prompt.ends_with("<|im_start|>user\nAnd <obj1>?<|im_end|>\n<|im_start|>assistant\n"));
    assert!(matches!(conv.ask("  ", &short(), &mut |_| {}), Err(ChatRexError::Request(_))));
}
