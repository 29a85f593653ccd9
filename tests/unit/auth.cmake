# Unit tests for the token cache (auth/): a fake ap_auth_io_t with a manual clock and timers.
add_executable(test_auth ${CMAKE_CURRENT_LIST_DIR}/test_auth.c)
target_link_libraries(test_auth PRIVATE ap_auth ap_warnings PkgConfig::CMOCKA)
add_test(NAME unit.auth COMMAND test_auth)
set_tests_properties(unit.auth PROPERTIES LABELS unit TIMEOUT 60)
