/*
 * Shared main() for the Check unit suites: TAP on stdout, so that
 * "meson test" reports every case.  Define SUITE_FN before including.
 */
#ifndef TEST_MAIN_H
#define TEST_MAIN_H

#include <check.h>
#include <stdlib.h>

Suite	*SUITE_FN(void);

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	sr = srunner_create(SUITE_FN());
	srunner_set_tap(sr, "-");
	srunner_run_all(sr, CK_SILENT);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return (failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

#endif /* !TEST_MAIN_H */
