# Unit tests for the pure HTTP/1.1 head parser and the chunked decoder (proxy/http1.c, chunked.c).
foreach(_t http1 chunked)
  add_executable(test_${_t} ${CMAKE_CURRENT_LIST_DIR}/test_${_t}.c)
  target_link_libraries(test_${_t} PRIVATE ap_http1 ap_warnings PkgConfig::CMOCKA)
  add_test(NAME unit.${_t} COMMAND test_${_t})
  set_tests_properties(unit.${_t} PROPERTIES LABELS unit TIMEOUT 60)
endforeach()
