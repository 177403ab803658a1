//! [`ChatRex`]: load once, then detect, refer, count, caption, describe regions and chat.

use crate::answer::{Answer, ProposalBox, resolve};
use crate::config::ModelConfig;
use crate::dump::{DumpTensor, write_dump};
use crate::processor::build_prompt;
use crate::tasks;
use crate::template::{ChatTemplate, Turn};
use crate::ChatRexError;
use burn::tensor::{Device, Tensor};
use chatrex_common::image::RgbImage;
use chatrex_common::parity::values;
use chatrex_common::weights::{LoadReport, WeightDType, WeightLoader, open_checkpoint};
use chatrex_encoder::preprocess::tower_inputs;
use chatrex_encoder::{DualEncoder, EncoderKeys};
use chatrex_llm::generate::FnFilter;
use chatrex_llm::grammar::GroundingGrammar;
use chatrex_llm::grounding::{groundings, official_groundings};
use chatrex_llm::multimodal::splice_embeddings;
use chatrex_llm::retrieval::mask_out_of_range_objects;
use chatrex_llm::{CausalLm, ChatRexTokens, ChatTokenizer, GenerationOptions, LlmKeys, LogitsFilter, generate};
use chatrex_upn::{ImageSize, PromptType, Upn, UpnConfig};
use std::path::{Path, PathBuf};

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Weight dtype of the language model (f32 for parity; on the CPU backend f16 or bf16
    /// weights stay in host memory and are read by SIMD kernels, on GPUs bf16 is fastest).
    pub dtype: WeightDType,
    /// Weight dtype of the vision towers and projectors (f32 by default: Burn's CPU backend
    /// runs f16 convolutions several times slower than f32).
    pub vision_dtype: WeightDType,
    /// The UPN checkpoint, if proposals are to be computed.
    pub upn: Option<PathBuf>,
    /// UPN sizes (the official large config by default).
    pub upn_config: UpnConfig,
    /// Weight dtype of UPN.
    pub upn_dtype: WeightDType,
    /// With f32 UPN weights on the CPU backend: its host linear layers multiply on AMX tiles
    /// with inputs and weights split in two bf16 parts each (about 1e-6 of the f32 products;
    /// see `WeightLoader::with_split_f32_products`) where the CPU has tiles. Off by default:
    /// exact f32 products.
    pub upn_split_f32_products: bool,
    /// Overrides the chat template derived from the config.
    pub template: Option<ChatTemplate>,
    /// Show progress bars while loading.
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: WeightDType::F32,
            vision_dtype: WeightDType::F32,
            upn: None,
            upn_config: UpnConfig::large(),
            upn_dtype: WeightDType::F32,
            upn_split_f32_products: false,
            template: None,
            progress: false,
        }
    }
}

/// How UPN proposals are made and filtered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProposalOptions {
    /// Which UPN prompt.
    pub prompt: PromptType,
    /// Minimum score (official: 0.3).
    pub min_score: f32,
    /// NMS IoU threshold, ≤ 0 disables NMS (official tests: 0.8).
    pub nms_iou: f32,
    /// At most this many (the model has `<obj0>`..`<obj99>`).
    pub max_proposals: usize,
    /// Truncate box coordinates to integers as the official `UPNWrapper.filter` does.
    pub truncate_to_int: bool,
}

impl ProposalOptions {
    /// The official settings with the given prompt: score ≥ 0.3, NMS 0.8, top 100.
    pub fn official(prompt: PromptType) -> Self {
        Self {
            prompt,
            min_score: 0.3,
            nms_iou: 0.8,
            max_proposals: 100,
            truncate_to_int: false,
        }
    }
}

/// How an answer is generated.
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// Decoding settings (greedy, 512 new tokens by default).
    pub generation: GenerationOptions,
    /// Forbid `<objN>` with N ≥ number of proposals (default on). Off = the official decoding.
    pub index_mask: bool,
    /// Constrain the output to well-formed grounding segments.
    pub grammar: bool,
    /// Parse groundings with the official parser's quirks instead of the tolerant one.
    pub official_parser: bool,
    /// Write the ids and intermediate tensors of the request here.
    pub dump: Option<PathBuf>,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self {
            generation: GenerationOptions::default(),
            index_mask: true,
            grammar: false,
            official_parser: false,
            dump: None,
        }
    }
}

/// One of the official tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Detect every category of the list.
    Detect(Vec<String>),
    /// Find what a referring expression describes.
    Refer(String),
    /// Count and locate a category.
    Count(String),
    /// Grounded image caption, brief or detailed.
    Caption {
        /// The detailed template instead of the one-sentence one.
        detailed: bool,
    },
    /// Describe the caller's boxes (all of them) in a style.
    Region(crate::tasks::RegionStyle),
    /// A free question (may mention `<objN>`).
    Ask(String),
    /// A grounded conversation question.
    Chat(String),
}

impl Task {
    /// The UPN prompt the official demos use for this task.
    pub fn proposal_prompt(&self) -> PromptType {
        match self {
            Task::Chat(_) => PromptType::Coarse,
            _ => PromptType::Fine,
        }
    }

    /// The question text for `k` proposals.
    pub fn question(&self, k: usize) -> Result<String, ChatRexError> {
        Ok(match self {
            Task::Detect(categories) => {
                // Entries may themselves be lists ("a; b"); separators alone are not names.
                let names: Vec<String> = categories.iter().flat_map(|c| tasks::parse_categories(c)).collect();
                if names.is_empty() {
                    return Err(ChatRexError::Request("the category list is empty".into()));
                }
                tasks::detect(&tasks::join_objects(&names))
            }
            Task::Refer(e) => {
                if e.trim().is_empty() {
                    return Err(ChatRexError::Request("the referring expression is empty".into()));
                }
                tasks::detect(e.trim())
            }
            Task::Count(c) => {
                if c.trim().is_empty() {
                    return Err(ChatRexError::Request("the category to count is empty".into()));
                }
                tasks::count(c.trim())
            }
            Task::Caption { detailed: false } => tasks::brief_caption(),
            Task::Caption { detailed: true } => tasks::detailed_caption(),
            Task::Region(style) => tasks::region_caption(&tasks::object_list(k), *style),
            Task::Ask(q) | Task::Chat(q) if q.trim().is_empty() => {
                return Err(ChatRexError::Request("the question is empty".into()));
            }
            Task::Ask(q) => q.clone(),
            Task::Chat(q) => tasks::grounded_conversation(q),
        })
    }
}

/// The image side of a request, kept across the turns of a conversation.
struct EncodedImage {
    size: ImageSize,
    proposals: Vec<ProposalBox>,
    image_tokens: Tensor<2>,
    object_tokens: Tensor<2>,
    dump: Vec<DumpTensor>,
}

/// The whole ChatRex model: UPN (optional), dual encoder, LLM, tokenizer.
#[derive(Debug, Clone)]
pub struct ChatRex {
    config: ModelConfig,
    template: ChatTemplate,
    encoder: DualEncoder,
    lm: CausalLm,
    tokenizer: ChatTokenizer,
    tokens: ChatRexTokens,
    upn: Option<Upn>,
    device: Device,
    report: LoadReport,
}

/// Files a model directory must contain.
pub const REQUIRED_FILES: &[&str] = &["config.json", "tokenizer.json"];

impl ChatRex {
    /// Loads a model directory in the Hugging Face layout of `IDEA-Research/ChatRex-7B` or
    /// `IDEA-Research/RexSeek-3B` (config.json, safetensors shards + index, tokenizer files),
    /// strictly (every tensor accounted for), plus the UPN checkpoint if given.
    pub fn load(model_dir: &Path, options: &LoadOptions, device: &Device) -> Result<Self, ChatRexError> {
        let missing: Vec<&str> = REQUIRED_FILES.iter().copied().filter(|f| !model_dir.join(f).is_file()).collect();
        let has_weights = model_dir.join("model.safetensors.index.json").is_file()
            || std::fs::read_dir(model_dir)
                .map(|d| d.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "safetensors")))
                .unwrap_or(false);
        if !missing.is_empty() || !has_weights {
            let mut need: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            if !has_weights {
                need.push("model.safetensors (or model-*-of-*.safetensors + model.safetensors.index.json)".into());
            }
            return Err(ChatRexError::MissingFiles(format!(
                "the model directory {} lacks {}; download IDEA-Research/ChatRex-7B (or RexSeek-3B) into it, e.g. `huggingface-cli download IDEA-Research/ChatRex-7B --local-dir {}`",
                model_dir.display(),
                need.join(", "),
                model_dir.display()
            )));
        }
        let config = ModelConfig::from_dir(model_dir)?;
        for note in &config.notes {
            tracing::warn!("{note}");
        }
        let tokenizer = ChatTokenizer::from_dir(model_dir)?;
        let source = open_checkpoint(model_dir, None)?;
        let mut vb = WeightLoader::new(source, device, options.dtype);
        if options.progress {
            vb = vb.with_progress("loading ChatRex");
        }
        Self::assemble(config, tokenizer, &vb, options, device, || match &options.upn {
            Some(path) => {
                let upn = Upn::checkpoint_loader(path, device, options.upn_dtype)?.with_split_f32_products(options.upn_split_f32_products);
                Ok(Some(Upn::from_loader(&upn, &options.upn_config)?.0))
            }
            None => Ok(None),
        })
    }

    /// A model with deterministic random weights of the sizes in `config` (benchmarks, shape
    /// tests), with the given tokenizer and, if `upn` is given, a random UPN of that size.
    pub fn random(
        config: ModelConfig,
        tokenizer: ChatTokenizer,
        upn: Option<&UpnConfig>,
        options: &LoadOptions,
        device: &Device,
        seed: u64,
    ) -> Result<Self, ChatRexError> {
        let vb = WeightLoader::random(seed, device, options.dtype);
        Self::assemble(config, tokenizer, &vb, options, device, || match upn {
            Some(c) => {
                let upn = WeightLoader::random(seed + 1, device, options.upn_dtype).with_split_f32_products(options.upn_split_f32_products);
                Ok(Some(Upn::from_loader(&upn, c)?.0))
            }
            None => Ok(None),
        })
    }

    /// Builds the towers and the LLM from `vb` (towers in `options.vision_dtype`), checks that
    /// every weight was used, then builds the UPN with `upn` and puts the parts together.
    fn assemble(
        config: ModelConfig,
        tokenizer: ChatTokenizer,
        vb: &WeightLoader,
        options: &LoadOptions,
        device: &Device,
        upn: impl FnOnce() -> Result<Option<Upn>, ChatRexError>,
    ) -> Result<Self, ChatRexError> {
        let tokens = tokenizer.chatrex_tokens()?;
        let encoder = DualEncoder::from_loader(&vb.with_dtype(options.vision_dtype), &config.encoder, &EncoderKeys::default())?;
        let lm = CausalLm::from_loader(vb, &config.llm, &LlmKeys::default());
        let report = vb.finish("ChatRex")?;
        tracing::info!(tensors = report.tensors, bytes = report.bytes, "ChatRex loaded from {}", report.source);
        let upn = upn()?;
        Ok(Self {
            template: options.template.clone().unwrap_or_else(|| config.template.clone()),
            config,
            encoder,
            lm,
            tokenizer,
            tokens,
            upn,
            device: device.clone(),
            report,
        })
    }

    /// The parsed model configuration (with its notes).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// What loading consumed.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ChatTokenizer {
        &self.tokenizer
    }

    /// The chat template in use.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The proposal network, if loaded.
    pub fn upn(&self) -> Option<&Upn> {
        self.upn.as_ref()
    }

    /// UPN proposals for an image, filtered (score, NMS) and cut to the best
    /// `max_proposals`.
    pub fn propose(&self, image: &RgbImage, options: &ProposalOptions) -> Result<Vec<ProposalBox>, ChatRexError> {
        let upn = self.upn.as_ref().ok_or_else(|| {
            ChatRexError::NoProposals("no UPN checkpoint was loaded and no boxes were given".into())
        })?;
        let proposals = upn
            .propose(std::slice::from_ref(image), options.prompt)?
            .remove(0)
            .filter(options.min_score, options.nms_iou)
            .top_k(options.max_proposals);
        Ok(proposals
            .proposals
            .iter()
            .map(|p| ProposalBox {
                bbox: if options.truncate_to_int { p.bbox.map(f32::trunc) } else { p.bbox },
                score: Some(p.score),
            })
            .collect())
    }

    fn encode(&self, image: &RgbImage, proposals: &[ProposalBox], dump: bool) -> Result<EncodedImage, ChatRexError> {
        if proposals.is_empty() {
            return Err(ChatRexError::NoProposals(
                "ChatRex answers by retrieving boxes, and there are none (lower --min-score or give boxes)".into(),
            ));
        }
        let cfg = self.encoder.config();
        if proposals.len() > cfg.max_objects {
            return Err(ChatRexError::Request(format!(
                "{} boxes given, the model supports at most {}",
                proposals.len(),
                cfg.max_objects
            )));
        }
        let inputs = tower_inputs(image, cfg.high_res, cfg.clip.image_size);
        let features = self.encoder.encode_inputs(&inputs)?;
        let image_tokens = self.encoder.image_tokens(&features);
        let boxes: Vec<[f32; 4]> = proposals.iter().map(|p| p.bbox).collect();
        let object_tokens = self.encoder.object_tokens(&features, &boxes)?;
        let mut tensors = Vec::new();
        if dump {
            let (h, l) = (cfg.high_res, cfg.clip.image_size);
            let boxes_frame: Vec<f32> = boxes.iter().flat_map(|b| inputs.frame.map_box(*b)).collect();
            let hidden = self.config.llm.hidden_size;
            tensors.push(DumpTensor { name: "pixel_values_aux", shape: vec![1, 3, h, h], values: inputs.high_res.clone() });
            tensors.push(DumpTensor { name: "pixel_values", shape: vec![1, 3, l, l], values: inputs.low_res.clone() });
            tensors.push(DumpTensor { name: "boxes_768", shape: vec![boxes.len(), 4], values: boxes_frame });
            tensors.push(DumpTensor { name: "image_embeds", shape: vec![image_tokens.dims()[0], hidden], values: values(image_tokens.clone()) });
            tensors.push(DumpTensor { name: "object_embeds", shape: vec![boxes.len(), hidden], values: values(object_tokens.clone()) });
        }
        Ok(EncodedImage {
            size: ImageSize {
                width: image.width(),
                height: image.height(),
            },
            proposals: proposals.to_vec(),
            image_tokens,
            object_tokens,
            dump: tensors,
        })
    }

    fn generate_turn(
        &self,
        encoded: &mut EncodedImage,
        history: &[Turn],
        question: &str,
        options: &AnswerOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(Answer, Turn), ChatRexError> {
        let k = encoded.proposals.len();
        let prompt = build_prompt(&self.template, &self.tokenizer, history, k, question)?;
        let positions = prompt.input_ids.len() - 1 + encoded.image_tokens.dims()[0];
        if let Some(limit) = self.config.max_length
            && positions > limit {
                return Err(ChatRexError::Request(format!(
                    "the prompt takes {positions} positions, more than the model's tokenizer_model_max_length {limit}"
                )));
            }
        let embeds = splice_embeddings(&self.lm, &prompt.input_ids, Some(&encoded.image_tokens), Some(&encoded.object_tokens))?;
        let tokens = self.tokens.clone();
        let mut range_mask = FnFilter(move |logits: &mut [f32]| mask_out_of_range_objects(logits, &tokens, k));
        let mut grammar = GroundingGrammar::new(self.tokens.clone(), k, self.eos_ids(&options.generation));
        let mut filters: Vec<&mut dyn LogitsFilter> = Vec::new();
        if options.index_mask {
            filters.push(&mut range_mask);
        }
        if options.grammar {
            filters.push(&mut grammar);
        }
        let generation = generate(&self.lm, &self.tokenizer, embeds.unsqueeze::<3>(), &options.generation, &mut filters, on_text)?;
        if let Some(dir) = &options.dump {
            let mut tensors = std::mem::take(&mut encoded.dump);
            let v = generation.first_step_logits.len();
            tensors.push(DumpTensor { name: "first_step_logits", shape: vec![v], values: generation.first_step_logits.clone() });
            write_dump(dir, &prompt.input_ids, &tensors)?;
        }
        let parsed = if options.official_parser {
            official_groundings(&generation.text)
        } else {
            groundings(&generation.text)
        };
        let turn = Turn {
            user: prompt.user.clone(),
            assistant: generation.text.clone(),
        };
        Ok((
            Answer {
                image: encoded.size,
                proposals: encoded.proposals.clone(),
                groundings: resolve(&parsed, &encoded.proposals),
                text: generation.text.clone(),
                prompt: prompt.text,
                input_ids: prompt.input_ids,
                generation,
            },
            turn,
        ))
    }

    fn eos_ids(&self, options: &GenerationOptions) -> Vec<u32> {
        if !options.eos_token_ids.is_empty() {
            return options.eos_token_ids.clone();
        }
        let mut eos = self.config.llm.eos_token_ids.clone();
        eos.extend_from_slice(self.tokenizer.eos());
        eos
    }

    /// Answers `question` about `image` given the proposals (in `<objN>` order).
    pub fn answer(
        &self,
        image: &RgbImage,
        proposals: &[ProposalBox],
        question: &str,
        options: &AnswerOptions,
    ) -> Result<Answer, ChatRexError> {
        let mut encoded = self.encode(image, proposals, options.dump.is_some())?;
        self.generate_turn(&mut encoded, &[], question, options, &mut |_| {}).map(|(a, _)| a)
    }

    /// Runs an official task. Proposals come from `proposals` when given (the caller's boxes;
    /// required for [`Task::Region`]) or from UPN with the task's prompt (`prompt` overrides
    /// it) and the official filtering.
    pub fn run_task(
        &self,
        image: &RgbImage,
        task: &Task,
        proposals: Option<Vec<ProposalBox>>,
        prompt: Option<PromptType>,
        options: &AnswerOptions,
    ) -> Result<Answer, ChatRexError> {
        let proposals = match proposals {
            Some(p) => p,
            None if matches!(task, Task::Region(_)) => {
                return Err(ChatRexError::NoProposals("region captions need boxes from the caller".into()));
            }
            None => self.propose(image, &ProposalOptions::official(prompt.unwrap_or(task.proposal_prompt())))?,
        };
        let question = task.question(proposals.len())?;
        self.answer(image, &proposals, &question, options)
    }

    /// Detects every category of `categories` (UPN fine-grained proposals).
    pub fn detect(&self, image: &RgbImage, categories: &[&str]) -> Result<Answer, ChatRexError> {
        let task = Task::Detect(categories.iter().map(|s| s.to_string()).collect());
        self.run_task(image, &task, None, None, &AnswerOptions::default())
    }

    /// Starts a multi-turn grounded conversation about `image` over `proposals`.
    pub fn conversation(&self, image: &RgbImage, proposals: &[ProposalBox]) -> Result<Conversation<'_>, ChatRexError> {
        Ok(Conversation {
            model: self,
            encoded: self.encode(image, proposals, false)?,
            history: Vec::new(),
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// A multi-turn conversation: the image is encoded once, each turn re-reads the history.
pub struct Conversation<'a> {
    model: &'a ChatRex,
    encoded: EncodedImage,
    history: Vec<Turn>,
}

impl Conversation<'_> {
    /// Asks the next question; `on_text` streams the answer as it is generated.
    pub fn ask(&mut self, question: &str, options: &AnswerOptions, on_text: &mut dyn FnMut(&str)) -> Result<Answer, ChatRexError> {
        if question.trim().is_empty() {
            return Err(ChatRexError::Request("the question is empty".into()));
        }
        let (answer, turn) = self.model.generate_turn(&mut self.encoded, &self.history, question, options, on_text)?;
        self.history.push(turn);
        Ok(answer)
    }

    /// The finished turns.
    pub fn history(&self) -> &[Turn] {
        &self.history
    }
}
