//! Non-maximum suppression with torchvision's `nms` semantics.

/// Intersection over union of two xyxy boxes (areas without +1, as torchvision).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

/// Indices of the boxes kept by greedy NMS, in descending score order: a box is suppressed
/// when its IoU with an already kept box is **greater than** `threshold`. Ties in score keep
/// the lower index first.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[pos + 1..] {
            if !suppressed[j] && iou(&boxes[i], &boxes[j]) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_overlaps_above_threshold_only() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]];
        let scores = [0.9, 0.8, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5), vec![0, 2]);
        assert_eq!(nms(&boxes, &scores, 0.81), vec![0, 1, 2]);
        assert!(nms(&[], &[], 0.5).is_empty());
    }

    #[test]
    fn degenerate_boxes_do_not_panic() {
        let boxes = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]];
        assert_eq!(nms(&boxes, &[0.5, 0.4], 0.5), vec![0, 1]);
    }
}
