# Unit tests for the config loader (conf/): every provider, every class of error, secrets never
# printed, env-only mode, and the shipped config plus conf/examples/*.json.
add_executable(test_conf ${CMAKE_CURRENT_LIST_DIR}/test_conf.c)
target_link_libraries(test_conf PRIVATE ap_conf ap_warnings PkgConfig::CMOCKA)
target_compile_definitions(test_conf PRIVATE AP_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_test(NAME unit.conf COMMAND test_conf)
set_tests_properties(unit.conf PROPERTIES LABELS unit TIMEOUT 60)
