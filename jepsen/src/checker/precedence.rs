//! Real-time precedence in O(n log n): for each operation, the largest value among the
//! operations that completed before it was invoked. Comparing every pair would be
//! quadratic, and histories hold ~100k operations; sorting completions and invocations once
//! and sweeping both with a running maximum is enough, since the checks built on it only
//! need the maximum ("every append that completed before this poll was invoked is below its
//! high watermark" is "the largest such append is").

/// Something that completed at `complete_ns` with a `value` (an offset, a high watermark);
/// `id` says which, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completed {
    pub complete_ns: u64,
    pub value: u64,
    pub id: usize,
}

/// For each of `invoked` (invocation times), the `Completed` with the largest value among
/// those that completed strictly before it (`Operation::precedes`), or None; in the order of
/// `invoked`. Ties in value go to the earliest completion.
pub(crate) fn max_completed_before(completed: &[Completed], invoked: &[u64]) -> Vec<Option<Completed>> {
    let mut completed: Vec<Completed> = completed.to_vec();
    completed.sort_by_key(|done| done.complete_ns);
    let mut order: Vec<usize> = (0..invoked.len()).collect();
    order.sort_by_key(|&query| invoked[query]);
    let mut answers = vec![None; invoked.len()];
    let mut best: Option<Completed> = None;
    let mut next = 0;
    for query in order {
        while next < completed.len() && completed[next].complete_ns < invoked[query] {
            if best.is_none_or(|best| completed[next].value > best.value) {
                best = Some(completed[next]);
            }
            next += 1;
        }
        answers[query] = best;
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(complete_ns: u64, value: u64, id: usize) -> Completed {
        Completed { complete_ns, value, id }
    }

    #[test]
    fn each_invocation_sees_the_largest_value_completed_strictly_before_it() {
        let completed = [done(30, 7, 0), done(10, 2, 1), done(20, 9, 2), done(40, 1, 3)];
        let answers = max_completed_before(&completed, &[25, 5, 10, 11, 100, 20]);
        let ids: Vec<Option<usize>> = answers.iter().map(|answer| answer.map(|done| done.id)).collect();
        assert_eq!(ids, vec![Some(2), None, None, Some(1), Some(2), Some(1)]);
        assert_eq!(answers[4].map(|done| done.value), Some(9));
    }

    #[test]
    fn nothing_completed_means_no_answer() {
        assert_eq!(max_completed_before(&[], &[1, 2]), vec![None, None]);
        assert!(max_completed_before(&[done(1, 1, 0)], &[]).is_empty());
    }
}
