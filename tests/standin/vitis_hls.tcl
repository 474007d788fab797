# Stand-in Vitis HLS: the commands of FINN's ipgentcl_template, each checking its arguments.
namespace eval ::si::hls {
    variable project "" solution "" part "" top "" clock "" files {} synthesized 0 cflags {}
}
# the headers Vitis HLS itself provides (its include folder), found without -I
set ::si::hls::vitis_headers {ap_int.h ap_fixed.h ap_axi_sdata.h hls_stream.h hls_vector.h hls_math.h
    hls_half.h ap_utils.h hls_task.h etc/ap_utils.h ap_common.h}

proc open_project {args} {
    set o [::si::opts $args {-reset 0} open_project]
    if {[llength [dict get $o args]] != 1} { ::si::fail "expects one project name, got [dict get $o args]" }
    set ::si::hls::project [lindex [dict get $o args] 0]
    file mkdir $::si::hls::project
}

# Every quoted or bracketed #include of a source resolves in its own folder, the -I folders, or Vitis HLS's.
proc ::si::hls::check_includes {file incdirs seen} {
    set fh [open $file r]; set text [read $fh]; close $fh
    foreach {- name} [regexp -all -inline -line {^\s*#\s*include\s*[<"]([^>"]+)[>"]} $text] {
        set found ""
        foreach d [concat [list [file dirname $file]] $incdirs] {
            if {[file isfile [file join $d $name]]} { set found [file normalize [file join $d $name]]; break }
        }
        if {$found eq ""} {
            if {[lsearch -exact $::si::hls::vitis_headers $name] >= 0 || ![string match *.h* $name] \
                    || [regexp {^(std|c)[a-z_]*$|^(cstdint|cstddef|cmath|cassert|iostream|string|vector|type_traits)} $name]} {
                continue
            }
            return -code error "ERROR: \[stand-in\] add_files: $file includes \"$name\", found in none of\
                [llength $incdirs] -I folders ($incdirs) nor Vitis HLS's headers"
        }
        if {[lsearch -exact $seen $found] < 0 && [string match "*finn-hlslib*" $found]} {
            lappend seen $found
            set seen [::si::hls::check_includes $found $incdirs $seen]
        }
    }
    return $seen
}

proc add_files {args} {
    set o [::si::opts $args {-cflags 1 -csimflags 1 -tb 0} add_files]
    if {$::si::hls::project eq ""} { ::si::fail "no project open (open_project first)" }
    set incdirs {}
    if {[dict exists $o -cflags]} {
        foreach {- d} [regexp -all -inline -- {-I(\S+)} [dict get $o -cflags]] { lappend incdirs $d }
        foreach flag [dict get $o -cflags] {
            if {![regexp {^-(I\S+|std=c\+\+(11|14|17)|D\S+|O[0-3])$} $flag]} { ::si::fail "unknown compiler flag $flag" }
        }
    }
    foreach f [dict get $o args] {
        ::si::need_file $f "source" add_files
        ::si::hls::check_includes $f $incdirs {}
        lappend ::si::hls::files $f
    }
}

proc set_top {name} {
    set ::si::hls::top $name
}

proc open_solution {args} {
    set o [::si::opts $args {-reset 0 -flow_target 1} open_solution]
    if {$::si::hls::project eq ""} { ::si::fail "no project open" }
    set ::si::hls::solution [lindex [dict get $o args] 0]
}

proc set_part {part} {
    if {$::si::hls::solution eq ""} { ::si::fail "no solution open (open_solution first)" }
    ::si::need_part $part set_part
    set ::si::hls::part $part
}

proc set_param {name value} {
    if {$name ne "hls.enable_hidden_option_error"} { ::si::fail "unknown parameter $name" }
}

proc config_compile {args} {
    set o [::si::opts $args {-disable_unroll_code_size_check 0 -pipeline_style 1 -pipeline_loops 1} config_compile]
    if {[dict exists $o -pipeline_style] && [lsearch {stp frp flp} [dict get $o -pipeline_style]] < 0} {
        ::si::fail "-pipeline_style [dict get $o -pipeline_style] is not stp, frp or flp"
    }
}

proc config_interface {args} { ::si::opts $args {-m_axi_addr64 0 -m_axi_alignment_byte_size 1} config_interface }
proc config_rtl {args} {
    set o [::si::opts $args {-module_auto_prefix 0 -deadlock_detection 1 -reset 1} config_rtl]
    if {[dict exists $o -deadlock_detection] && [lsearch {none sim hw} [dict get $o -deadlock_detection]] < 0} {
        ::si::fail "-deadlock_detection [dict get $o -deadlock_detection] is not none, sim or hw"
    }
}

proc create_clock {args} {
    set o [::si::opts $args {-period 1 -name 1} create_clock]
    if {![string is double -strict [dict get $o -period]] || [dict get $o -period] <= 0} {
        ::si::fail "-period [dict get $o -period] is not a positive number of ns"
    }
    set ::si::hls::clock [dict get $o -period]
}

proc csynth_design {} {
    foreach {what var} {project project solution solution part part "top function" top clock clock} {
        if {[set ::si::hls::$var] eq ""} { ::si::fail "no $what set before synthesis" }
    }
    if {![llength $::si::hls::files]} { ::si::fail "no source files added" }
    set defined 0
    foreach f $::si::hls::files {
        set fh [open $f r]; set text [read $fh]; close $fh
        if {[regexp "void\\s+$::si::hls::top\\s*\\(" $text]} { set defined 1 }
    }
    if {!$defined} { ::si::fail "top function $::si::hls::top is defined in none of $::si::hls::files" }
    set ::si::hls::synthesized 1
    puts "INFO: \[stand-in\] csynth_design of $::si::hls::top checked (no RTL generated)"
}

# The IP folder FINN checks next; component.xml names the IP and says it is a stand-in without HDL.
proc export_design {args} {
    set o [::si::opts $args {-format 1 -rtl 1 -flow 1} export_design]
    if {[dict get $o -format] ne "ip_catalog"} { ::si::fail "-format [dict get $o -format] (FINN exports ip_catalog)" }
    if {!$::si::hls::synthesized} { ::si::fail "csynth_design did not run" }
    set ip [file join $::si::hls::project $::si::hls::solution impl ip]
    file mkdir $ip
    set fh [open [file join $ip component.xml] w]
    puts $fh "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- stand-in: laid out by the test suite's vitis_hls,\
        which generates no HDL -->\n<spirit:component xmlns:spirit=\"http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009\">\
        \n  <spirit:vendor>xilinx.com</spirit:vendor>\n  <spirit:library>hls</spirit:library>\
        \n  <spirit:name>$::si::hls::top</spirit:name>\n  <spirit:version>1.0</spirit:version>\n</spirit:component>"
    close $fh
}
