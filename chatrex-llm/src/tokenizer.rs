//! Tokenization for ChatRex: a Hugging Face `tokenizer.json` (via the `tokenizers` crate),
//! BOS handling from `tokenizer_config.json`, the chunk-wise encoding of multimodal prompts,
//! and the ChatRex special tokens looked up by string.

use crate::LlmError;
use std::path::Path;
use tokenizers::Tokenizer;

/// Placeholder id of the image (replaced by the image embeddings): `IMAGE_TOKEN_INDEX`.
pub const IMAGE_PLACEHOLDER: i64 = -200;
/// Placeholder id of one object's RoI embedding: `DEFAULT_OBJECT_INDEX`.
pub const OBJECT_PLACEHOLDER: i64 = -300;
/// The image placeholder in prompt text.
pub const IMAGE_TAG: &str = "<image>";
/// The object-feature placeholder in prompt text.
pub const OBJECT_FEATURE_TAG: &str = "<objfeat>";
/// Number of object index tokens `<obj0>`..`<obj99>`.
pub const MAX_OBJECT_TOKENS: usize = 100;

/// Ids of the ChatRex output-grammar tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRexTokens {
    /// `<obj0>`..`<obj99>`.
    pub objects: Vec<u32>,
    /// `<ground>`.
    pub ground: u32,
    /// `</ground>`.
    pub ground_end: u32,
    /// `<objects>`.
    pub objects_start: u32,
    /// `</objects>`.
    pub objects_end: u32,
}

impl ChatRexTokens {
    /// The object index of a token id, if it is an `<objN>` token.
    pub fn object_index(&self, id: u32) -> Option<usize> {
        self.objects.iter().position(|&o| o == id)
    }
}

/// A tokenizer with the conventions ChatRex needs.
#[derive(Debug, Clone)]
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    /// The tokenizer's BOS token, if it has one.
    bos_token: Option<u32>,
    /// Whether plain prompts get BOS (`add_bos_token`).
    add_bos: bool,
    eos: Vec<u32>,
}

#[derive(serde::Deserialize, Default)]
struct TokenizerConfig {
    add_bos_token: Option<bool>,
    bos_token: Option<serde_json::Value>,
    eos_token: Option<serde_json::Value>,
}

fn token_string(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl ChatTokenizer {
    /// Loads `tokenizer.json` and, when given, `tokenizer_config.json` (BOS/EOS tokens and
    /// `add_bos_token`). Without a config, BOS is added iff the tokenizer's post-processor adds
    /// one for a single sequence.
    pub fn from_files(tokenizer_json: &Path, tokenizer_config: Option<&Path>) -> Result<Self, LlmError> {
        let tokenizer = Tokenizer::from_file(tokenizer_json)
            .map_err(|e| LlmError::Tokenizer(format!("{}: {e}", tokenizer_json.display())))?;
        let config: TokenizerConfig = match tokenizer_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| LlmError::Tokenizer(format!("{}: {e}", path.display())))?;
                serde_json::from_str(&text).map_err(|e| LlmError::Tokenizer(format!("{}: {e}", path.display())))?
            }
            None => TokenizerConfig::default(),
        };
        let lookup = |t: Option<String>| t.and_then(|s| tokenizer.token_to_id(&s));
        let bos_id = lookup(token_string(&config.bos_token));
        let add_bos = match config.add_bos_token {
            Some(flag) => flag,
            None => {
                // Infer from the post-processor: does a single sequence get a prefix token?
                let with = tokenizer.encode("a", true).map(|e| e.len()).unwrap_or(0);
                let without = tokenizer.encode("a", false).map(|e| e.len()).unwrap_or(0);
                with > without
            }
        };
        let bos_token = bos_id.or_else(|| {
            // No config: take the post-processor's prefix token when it adds one.
            let with = tokenizer.encode("a", true).ok()?;
            let without = tokenizer.encode("a", false).ok()?;
            (with.len() > without.len()).then(|| with.get_ids().first().copied()).flatten()
        });
        let eos = lookup(token_string(&config.eos_token)).into_iter().collect();
        Ok(Self {
            tokenizer,
            bos_token,
            add_bos: add_bos && bos_token.is_some(),
            eos,
        })
    }

    /// Loads `tokenizer.json` (+ `tokenizer_config.json` if present) from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self, LlmError> {
        let config = dir.join("tokenizer_config.json");
        Self::from_files(&dir.join("tokenizer.json"), config.exists().then_some(config.as_path()))
    }

    /// Adds `<obj0>`..`<obj99>`, `<ground>`, `</ground>`, `<objects>`, `</objects>` as special
    /// tokens (after the existing vocabulary, in that order, as ChatRex's builder does), turning
    /// a base Llama/Qwen tokenizer into a ChatRex one. Returns how many were new.
    pub fn add_chatrex_tokens(&mut self) -> usize {
        let names: Vec<String> = (0..MAX_OBJECT_TOKENS)
            .map(|i| format!("<obj{i}>"))
            .chain(["<ground>", "</ground>", "<objects>", "</objects>"].map(String::from))
            .collect();
        let tokens: Vec<tokenizers::AddedToken> = names
            .into_iter()
            .map(|t| tokenizers::AddedToken::from(t, true).normalized(false))
            .collect();
        self.tokenizer.add_special_tokens(&tokens)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The tokenizer's BOS id, if it has a BOS token (prepended to multimodal prompts).
    pub fn bos(&self) -> Option<u32> {
        self.bos_token
    }

    /// Whether plain prompts get BOS (`add_bos_token`).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// EOS ids named by the tokenizer config.
    pub fn eos(&self) -> &[u32] {
        &self.eos
    }

    /// Id of a token given as text (e.g. `"<ground>"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Encodes text without special tokens (no BOS).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// Encodes a prompt as-is, with BOS first if the tokenizer adds one.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids: Vec<u32> = self.bos_token.filter(|_| self.add_bos).into_iter().collect();
        ids.extend(self.encode_plain(text)?);
        Ok(ids)
    }

    /// The official multimodal tokenization: the tokenizer's BOS token (if it has one,
    /// whatever `add_bos_token` says — as RexSeek's `tokenizer_image_object_token`), then the prompt split on
    /// `<image>` and `<objfeat>` (kept as [`IMAGE_PLACEHOLDER`] / [`OBJECT_PLACEHOLDER`]),
    /// every other piece encoded separately without special tokens (empty pieces dropped).
    pub fn encode_multimodal(&self, prompt: &str) -> Result<Vec<i64>, LlmError> {
        let mut ids: Vec<i64> = self.bos_token.iter().map(|&b| i64::from(b)).collect();
        let mut rest = prompt;
        while !rest.is_empty() {
            let next = [(IMAGE_TAG, IMAGE_PLACEHOLDER), (OBJECT_FEATURE_TAG, OBJECT_PLACEHOLDER)]
                .iter()
                .filter_map(|&(tag, id)| rest.find(tag).map(|pos| (pos, tag, id)))
                .min_by_key(|&(pos, _, _)| pos);
            let (chunk, placeholder, advance) = match next {
                Some((pos, tag, id)) => (&rest[..pos], Some(id), pos + tag.len()),
                None => (rest, None, rest.len()),
            };
            if !chunk.is_empty() {
                ids.extend(self.encode_plain(chunk)?.into_iter().map(i64::from));
            }
            ids.extend(placeholder);
            rest = &rest[advance..];
        }
        Ok(ids)
    }

    /// Decodes ids; `skip_special` drops special tokens (ChatRex keeps them).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, LlmError> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// The ChatRex grammar tokens, looked up by string; an error names any that is missing.
    pub fn chatrex_tokens(&self) -> Result<ChatRexTokens, LlmError> {
        let need = |t: &str| {
            self.token_id(t)
                .ok_or_else(|| LlmError::Tokenizer(format!("the tokenizer has no `{t}` token (not a ChatRex tokenizer?)")))
        };
        Ok(ChatRexTokens {
            objects: (0..MAX_OBJECT_TOKENS).map(|i| need(&format!("<obj{i}>"))).collect::<Result<_, _>>()?,
            ground: need("<ground>")?,
            ground_end: need("</ground>")?,
            objects_start: need("<objects>")?,
            objects_end: need("</objects>")?,
        })
    }
}

/// Emits text as tokens arrive: decodes the whole generated sequence each step and yields the
/// new suffix, holding back text that ends in an incomplete character. The concatenation of
/// everything yielded plus [`finish`](Self::finish) equals the decoding of all ids.
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: String,
}

impl TextStream {
    /// A stream with no tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token and returns the newly decodable text, if any.
    pub fn push(&mut self, tokenizer: &ChatTokenizer, id: u32) -> Result<Option<String>, LlmError> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, false)?;
        if text.ends_with('\u{FFFD}') || !text.starts_with(&self.emitted) || text.len() <= self.emitted.len() {
            return Ok(None);
        }
        let delta = text[self.emitted.len()..].to_string();
        self.emitted = text;
        Ok(Some(delta))
    }

    /// Whatever has not been yielded yet.
    pub fn finish(&mut self, tokenizer: &ChatTokenizer) -> Result<Option<String>, LlmError> {
        let text = tokenizer.decode(&self.ids, false)?;
        let delta = text.strip_prefix(self.emitted.as_str()).map(str::to_string);
        self.emitted = text;
        Ok(delta.filter(|d| !d.is_empty()))
    }
}
