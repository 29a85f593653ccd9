# Unit tests for the outbound header list (proxy/headers.c) and loop detection.
add_executable(test_headers ${CMAKE_CURRENT_LIST_DIR}/test_headers.c)
target_link_libraries(test_headers PRIVATE ap_core ap_warnings PkgConfig::CMOCKA)
add_test(NAME unit.headers COMMAND test_headers)
set_tests_properties(unit.headers PROPERTIES LABELS unit TIMEOUT 60)
