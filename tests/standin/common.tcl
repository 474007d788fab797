# Stand-in Xilinx tools, shared part: option parsing, file checks, the parts installed, and an `unknown`
# that refuses any command without a stub (a real tool may have it; the stand-in cannot check it).
namespace eval ::si {
    variable virtual {}   ;# files a stub stands in for (a wrapper Vivado would write): may be named later
    variable log_lines {}
}

proc ::si::fail {msg} {
    return -code error -errorcode STANDIN "ERROR: \[stand-in\] [lindex [info level -1] 0]: $msg"
}

# Parses args against spec (option -> 1 takes a value, 0 a flag); unknown options are refused.
# Returns a dict: the options given, and "args" the positionals.
proc ::si::opts {argv spec {cmd ""}} {
    set out [dict create args {}]
    for {set i 0} {$i < [llength $argv]} {incr i} {
        set a [lindex $argv $i]
        if {[string index $a 0] eq "-" && ![string is double -strict $a]} {
            if {![dict exists $spec $a]} {
                return -code error "ERROR: \[stand-in\] $cmd: unknown option $a (known: [dict keys $spec])"
            }
            if {[dict get $spec $a]} {
                if {$i + 1 >= [llength $argv]} { return -code error "ERROR: \[stand-in\] $cmd: $a needs a value" }
                dict set out $a [lindex $argv [incr i]]
            } else {
                dict set out $a 1
            }
        } else {
            dict lappend out args $a
        }
    }
    return $out
}

proc ::si::need_file {path what {cmd ""}} {
    if {![file exists $path] && [lsearch -exact $::si::virtual [file normalize $path]] < 0} {
        return -code error "ERROR: \[stand-in\] $cmd: $what $path does not exist"
    }
}

proc ::si::need_dir {path what {cmd ""}} {
    if {![file isdirectory $path]} {
        return -code error "ERROR: \[stand-in\] $cmd: $what $path is not a folder"
    }
}

proc ::si::installed {kind} {
    set var [expr {$kind eq "part" ? "STANDIN_PARTS" : "STANDIN_BOARD_PARTS"}]
    set dflt [expr {$kind eq "part" ? "STANDIN_DEFAULT_PARTS" : "STANDIN_DEFAULT_BOARD_PARTS"}]
    if {[info exists ::env($var)]} { return [split $::env($var) ,] }
    return [split $::env($dflt) ,]
}

proc ::si::need_part {part cmd} {
    if {[lsearch -exact [::si::installed part] $part] < 0} {
        return -code error "ERROR: \[stand-in\] $cmd: part $part is not installed (installed: [::si::installed part])"
    }
}

rename unknown ::si::tcl_unknown
proc unknown {args} {
    set cmd [lindex $args 0]
    if {[auto_load $cmd]} { return [uplevel 1 $args] }  ;# Tcl's own lazily loaded commands
    return -code error "ERROR: \[stand-in\] no stub for '$cmd' (a command the real tool may have; the stand-in\
        cannot check it: add a stub that checks its arguments)"
}

proc ::si::run {script} {
    set ::si::script $script
    if {[catch {uplevel #0 [list source $script]} err opts]} {
        if {![string match "ERROR:*" $err]} { set err "ERROR: \[stand-in\] Tcl: $err" }
        puts stderr "$err\n    in [file tail $script]: [string range [dict get $opts -errorinfo] 0 600]"
        ::si::real_exit 1
    }
    ::si::finish
    ::si::real_exit 0
}

rename exit ::si::real_exit
proc exit {{code 0}} {
    if {$code == 0} { ::si::finish }
    ::si::real_exit $code
}
proc ::si::finish {} { puts "INFO: \[stand-in\] [file tail $::si::script] ran to its end, every command checked" }
