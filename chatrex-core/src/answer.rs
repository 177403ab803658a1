//! Typed results of a ChatRex request and their JSON form.

use chatrex_llm::Generation;
use chatrex_upn::ImageSize;
use serde::Serialize;

/// A box the LLM was shown, in original-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProposalBox {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// UPN score, or `None` for boxes given by the caller.
    pub score: Option<f32>,
}

/// A phrase of the answer with the boxes it was grounded to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundedObject {
    /// The phrase (category name, expression, caption phrase…).
    pub phrase: String,
    /// Indices into the proposals (only those that exist).
    pub indices: Vec<usize>,
    /// The proposal boxes at those indices.
    pub boxes: Vec<[f32; 4]>,
    /// Their UPN scores.
    #[serde(skip)]
    pub scores: Vec<Option<f32>>,
    /// Indices the model wrote that point to no proposal (possible with the index mask off).
    #[serde(skip)]
    pub out_of_range: Vec<usize>,
}

/// The result of one request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The image size the boxes refer to.
    pub image: ImageSize,
    /// The boxes the LLM was shown, in `<objN>` order.
    pub proposals: Vec<ProposalBox>,
    /// The raw answer (special tokens kept, EOS excluded).
    pub text: String,
    /// Grounded phrases in answer order.
    pub groundings: Vec<GroundedObject>,
    /// The prompt text sent to the LLM.
    pub prompt: String,
    /// Its ids with placeholders.
    pub input_ids: Vec<i64>,
    /// The generation (ids, stop reason).
    pub generation: Generation,
}

/// The JSON contract of the `chatrex` example:
/// `{"image": {...}, "proposals": [...], "answer": "...", "groundings": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerJson<'a> {
    /// Image size.
    pub image: ImageSize,
    /// Proposals shown to the model.
    pub proposals: &'a [ProposalBox],
    /// Raw model text.
    pub answer: &'a str,
    /// Grounded phrases.
    pub groundings: &'a [GroundedObject],
}

impl Answer {
    /// The contract JSON view.
    pub fn to_json(&self) -> AnswerJson<'_> {
        AnswerJson {
            image: self.image,
            proposals: &self.proposals,
            answer: &self.text,
            groundings: &self.groundings,
        }
    }
}

/// Resolves parsed groundings against the proposals.
pub fn resolve(groundings: &[chatrex_llm::grounding::Grounding], proposals: &[ProposalBox]) -> Vec<GroundedObject> {
    groundings
        .iter()
        .map(|g| {
            let (indices, out_of_range): (Vec<usize>, Vec<usize>) =
                g.indices.iter().partition(|&&i| i < proposals.len());
            GroundedObject {
                phrase: g.phrase.clone(),
                boxes: indices.iter().map(|&i| proposals[i].bbox).collect(),
                scores: indices.iter().map(|&i| proposals[i].score).collect(),
                indices,
                out_of_range,
            }
        })
        .collect()
}
