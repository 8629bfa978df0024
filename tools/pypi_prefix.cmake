# Injected with -DCMAKE_PROJECT_INCLUDE by tools/build_interfaces.py when an interface package is built
# against the ROS wheels from PyPI instead of a ROS install.
#
# Those wheels were built in manylinux containers, and some exported targets (the *__rosidl_generator_py
# libraries) still name the container's Python include folder (/opt/python/...). CMake refuses imported
# targets with missing include folders, so once every find_package() has run (deferred to the end of the
# top-level CMakeLists.txt), drop the include folders that do not exist here. Harmless on a real ROS install.

function(hpe_ros_drop_missing_include_dirs)
  get_property(imported DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(kept "")
    foreach(dir IN LISTS dirs)
      if(dir MATCHES "^\\$<" OR EXISTS "${dir}")
        list(APPEND kept "${dir}")
      endif()
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL hpe_ros_drop_missing_include_dirs)
