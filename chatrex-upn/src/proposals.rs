//! UPN output in image coordinates: [`Proposals`], sorting, score/NMS filtering.

use crate::nms::nms;
use serde::Serialize;

/// One proposal box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proposal {
    /// `[x1, y1, x2, y2]` in original-image pixels (floats, not clipped to the image).
    pub bbox: [f32; 4],
    /// Sigmoid score of the prompt logit.
    pub score: f32,
    /// The decoder query slot it came from.
    #[serde(skip)]
    pub query: usize,
}

/// Size of the original image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// All proposals of one image, sorted by descending score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposals {
    /// The original image size the boxes refer to.
    pub image: ImageSize,
    /// The proposals, best first.
    pub proposals: Vec<Proposal>,
}

impl Proposals {
    /// Builds sorted proposals from normalised `(cx, cy, w, h)` boxes and scores in query
    /// order, converting to xyxy in original pixels exactly as the official post-processing
    /// (`x1 = cx − w/2`, `x2 = x1 + w`, then × W; f32; no clipping).
    pub fn from_normalized(image: ImageSize, boxes_cxcywh: &[[f32; 4]], scores: &[f32]) -> Self {
        let (w_img, h_img) = (image.width as f32, image.height as f32);
        let mut proposals: Vec<Proposal> = boxes_cxcywh
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(query, (b, &score))| {
                let x1 = b[0] - b[2] / 2.0;
                let y1 = b[1] - b[3] / 2.0;
                let x2 = x1 + b[2];
                let y2 = y1 + b[3];
                Proposal {
                    bbox: [x1 * w_img, y1 * h_img, x2 * w_img, y2 * h_img],
                    score,
                    query,
                }
            })
            .collect();
        sort_by_score(&mut proposals);
        Self { image, proposals }
    }

    /// Keeps proposals with `score ≥ min_score`, then applies NMS at IoU `nms_iou` (disabled
    /// when `nms_iou ≤ 0`), sorted by score. Never fails: nothing surviving gives an empty
    /// list. Boxes stay floats (the official code truncates them to int32).
    pub fn filter(&self, min_score: f32, nms_iou: f32) -> Proposals {
        let kept: Vec<Proposal> = self
            .proposals
            .iter()
            .filter(|p| p.score >= min_score)
            .copied()
            .collect();
        let mut kept = if nms_iou > 0.0 && !kept.is_empty() {
            let boxes: Vec<[f32; 4]> = kept.iter().map(|p| p.bbox).collect();
            let scores: Vec<f32> = kept.iter().map(|p| p.score).collect();
            nms(&boxes, &scores, nms_iou).into_iter().map(|i| kept[i]).collect()
        } else {
            kept
        };
        sort_by_score(&mut kept);
        Proposals {
            image: self.image,
            proposals: kept,
        }
    }

    /// The first `k` proposals (ChatRex uses at most 100).
    pub fn top_k(&self, k: usize) -> Proposals {
        Proposals {
            image: self.image,
            proposals: self.proposals.iter().take(k).copied().collect(),
        }
    }

    /// The boxes, best first.
    pub fn boxes(&self) -> Vec<[f32; 4]> {
        self.proposals.iter().map(|p| p.bbox).collect()
    }

    /// Number of proposals.
    pub fn len(&self) -> usize {
        self.proposals.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.proposals.is_empty()
    }
}

fn sort_by_score(p: &mut [Proposal]) {
    p.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.query.cmp(&b.query)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_sorting_and_filtering() {
        let image = ImageSize { width: 100, height: 50 };
        let boxes = [[0.5, 0.5, 0.2, 0.4], [0.5, 0.5, 0.2, 0.39], [0.1, 0.1, 0.1, 0.1]];
        let p = Proposals::from_normalized(image, &boxes, &[0.5, 0.9, 0.1]);
        assert_eq!(p.proposals[0].query, 1);
        let expected = [40.0, 15.0, 60.0, 35.0];
        assert!(p.proposals[1].bbox.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-4), "{:?}", p.proposals[1].bbox);
        let f = p.filter(0.3, 0.8);
        assert_eq!(f.len(), 1);
        assert_eq!(p.filter(0.3, 0.0).len(), 2);
        assert!(p.filter(0.99, 0.8).is_empty());
        assert_eq!(p.top_k(2).len(), 2);
    }
}
