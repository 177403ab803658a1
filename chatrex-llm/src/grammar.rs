//! Optional grammar-constrained decoding: keeps the output to well-formed
//! `<ground>PHRASE</ground><objects>(<objN>)+</objects>` segments inside free text.
//!
//! | state | allowed next tokens |
//! | --- | --- |
//! | free text | anything but `</ground>`, `<objects>`, `</objects>`; `<objN>` only for N < K |
//! | in phrase | anything but grammar tokens, `<objN>` and EOS; `</ground>` once the phrase is non-empty |
//! | after `</ground>` | only `<objects>` |
//! | in objects | `<objN>` with N < K; `</objects>` after at least one |

use crate::tokenizer::ChatRexTokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Phrase { tokens: usize },
    AfterPhrase,
    Objects { count: usize },
}

/// The grammar's state over the generated tokens.
#[derive(Debug, Clone)]
pub struct GroundingGrammar {
    tokens: ChatRexTokens,
    num_boxes: usize,
    eos: Vec<u32>,
    state: State,
}

impl GroundingGrammar {
    /// A grammar for answers over `num_boxes` proposals; `eos` ends generation.
    pub fn new(tokens: ChatRexTokens, num_boxes: usize, eos: Vec<u32>) -> Self {
        Self {
            tokens,
            num_boxes,
            eos,
            state: State::Free,
        }
    }

    /// Masks (sets to −∞) every token the grammar does not allow next.
    pub fn mask(&self, logits: &mut [f32]) {
        let t = &self.tokens;
        let mut ban = |id: u32| {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        };
        let objects_in_range = &t.objects[..self.num_boxes.min(t.objects.len())];
        let objects_out_of_range = &t.objects[self.num_boxes.min(t.objects.len())..];
        match self.state {
            State::Free => {
                for id in [t.ground_end, t.objects_start, t.objects_end] {
                    ban(id);
                }
                objects_out_of_range.iter().for_each(|&id| ban(id));
            }
            State::Phrase { tokens } => {
                for id in [t.ground, t.objects_start, t.objects_end] {
                    ban(id);
                }
                if tokens == 0 {
                    ban(t.ground_end);
                }
                t.objects.iter().for_each(|&id| ban(id));
                self.eos.iter().for_each(|&id| ban(id));
            }
            State::AfterPhrase | State::Objects { .. } => {
                let mut allowed: Vec<u32> = Vec::new();
                match self.state {
                    State::AfterPhrase => allowed.push(t.objects_start),
                    State::Objects { count } => {
                        allowed.extend_from_slice(objects_in_range);
                        if count > 0 {
                            allowed.push(t.objects_end);
                        }
                    }
                    _ => {}
                }
                for (id, l) in logits.iter_mut().enumerate() {
                    if !allowed.contains(&(id as u32)) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }

    /// Moves the state past token `id`.
    pub fn advance(&mut self, id: u32) {
        let t = &self.tokens;
        self.state = match self.state {
            State::Free if id == t.ground => State::Phrase { tokens: 0 },
            State::Free => State::Free,
            State::Phrase { .. } if id == t.ground_end => State::AfterPhrase,
            State::Phrase { tokens } => State::Phrase { tokens: tokens + 1 },
            State::AfterPhrase if id == t.objects_start => State::Objects { count: 0 },
            State::AfterPhrase => State::AfterPhrase,
            State::Objects { .. } if id == t.objects_end => State::Free,
            State::Objects { count } => State::Objects { count: count + 1 },
        };
    }
}
