/* Unit tests: a task's offsets after an abort (engine/task.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>
#include "internal.h"

static rill_task_t source_task(int64_t committed, int64_t first_uncommitted, int64_t next) {
        rill_task_t t;
        memset(&t, 0, sizeof(t));
        t.kind = RILL_TASK_SOURCE;
        t.stage = RILL_STAGE_RUNNING;
        t.committed_offset = committed;
        t.first_uncommitted = first_uncommitted;
        t.next_offset = next;
        t.eof_offset = 200;
        t.records_since_commit = next - first_uncommitted;
        return t;
}

/* After a commit at 40 and records 40..99: rewound to 40, position 40. */
static void abort_returns_to_the_commit(void **s) {
        (void)s;
        rill_task_t t = source_task(40, 40, 100);
        assert_int_equal(rill_task_abort(&t), 40);
        assert_int_equal(t.next_offset, 40);
        assert_int_equal(t.first_uncommitted, -1);
        assert_int_equal(t.records_since_commit, 0);
        assert_int_equal(t.eof_offset, -1); /* the end must be seen again */
}

/* A task that never committed (its committed offset could not be read:
 * source_progress_unknown) and processed 0..99: its input is rewound to 0,
 * and its position must say 0 too. With -1 there, a batch refetched after
 * the abort sought it to the batch's first offset (100), past the records
 * the abort had just dropped (the review of batched consumption). */
static void abort_without_a_commit_keeps_the_rewind_as_position(void **s) {
        (void)s;
        rill_task_t t = source_task(-1, 0, 100);
        assert_int_equal(rill_task_abort(&t), 0);
        assert_int_equal(t.next_offset, 0);
}

/* Nothing processed and nothing committed: position stays unknown. */
static void abort_of_an_untouched_task_changes_nothing(void **s) {
        (void)s;
        rill_task_t t = source_task(-1, -1, -1);
        t.records_since_commit = 0;
        assert_int_equal(rill_task_abort(&t), -1);
        assert_int_equal(t.next_offset, -1);
        assert_int_equal(t.eof_offset, 200);
}

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(abort_returns_to_the_commit),
            cmocka_unit_test(abort_without_a_commit_keeps_the_rewind_as_position),
            cmocka_unit_test(abort_of_an_untouched_task_changes_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
