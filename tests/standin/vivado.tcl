# Stand-in Vivado: the commands of the preflight's part query and of FINN's Tcl (CreateStitchedIP, the
# per-node IPI commands of its layers, MakeZYNQProject's shell), each checking its arguments.
namespace eval ::si::viv {
    variable params [dict create board.repoPaths {}]
    variable project "" part "" board_part "" repo_paths {} catalog [dict create] design ""
    variable cells [dict create] pins [dict create] ports [dict create] files {} modules [dict create]
}

proc get_parts {args} {
    set o [::si::opts $args {-quiet 0 -filter 1 -of_objects 1} get_parts]
    set pat [lindex [dict get $o args] 0]
    return [lsearch -all -inline -glob [::si::installed part] $pat]
}

proc get_board_parts {args} {
    set o [::si::opts $args {-quiet 0 -filter 1 -latest_file_version 0} get_board_parts]
    set pat [lindex [dict get $o args] 0]
    set found [lsearch -all -inline -glob [::si::installed board-part] $pat]
    # board files added to the repository path count when their folder exists (the real tool reads board.xml)
    return $found
}

proc set_param {name value} {
    if {$name eq "board.repoPaths"} {
        foreach p $value { if {![file isdirectory $p]} { ::si::fail "board repository path $p is not a folder" } }
    } elseif {[lsearch {general.maxThreads tcl.collectionResultDisplayLimit} $name] < 0 && ![string match synth.* $name]} {
        ::si::fail "unknown parameter $name"
    }
    dict set ::si::viv::params $name $value
}

proc get_param {name} {
    if {![dict exists $::si::viv::params $name]} { ::si::fail "unknown parameter $name" }
    return [dict get $::si::viv::params $name]
}

proc version {args} {
    set release [expr {[info exists ::env(STANDIN_RELEASE)] ? $::env(STANDIN_RELEASE) : "v2024.2"}]
    return [string trimleft $release v]
}

# ---- projects, files, IP catalog -------------------------------------------------------------------------
proc create_project {args} {
    set o [::si::opts $args {-part 1 -force 0 -in_memory 0} create_project]
    lassign [dict get $o args] name dir
    if {$name eq ""} { ::si::fail "no project name" }
    if {[dict exists $o -part]} { ::si::need_part [dict get $o -part] create_project; set ::si::viv::part [dict get $o -part] }
    if {$dir ne ""} { file mkdir $dir; set ::si::viv::dir [file normalize $dir] } else { set ::si::viv::dir [pwd] }
    set ::si::viv::project $name
}
proc ::si::viv::need_project {} { if {$::si::viv::project eq ""} { ::si::fail "no project open" } }
proc current_project {args} { ::si::viv::need_project; return project }
proc current_fileset {args} { return fileset:sources_1 }
proc get_filesets {args} {
    foreach f $args { if {[lsearch {sources_1 sim_1 constrs_1 utils_1} $f] < 0} { ::si::fail "no fileset $f" } }
    return [lmap f $args {string cat fileset: $f}]
}
proc close_project {args} { set ::si::viv::project "" }
proc set_msg_config {args} { ::si::opts $args {-id 1 -suppress 0 -severity 1 -new_severity 1 -limit 1} set_msg_config }
proc reset_msg_config {args} { ::si::opts $args {-id 1 -suppress 0 -severity 1 -default_severity 0 -quiet 0} reset_msg_config }
proc update_compile_order {args} { ::si::opts $args {-fileset 1} update_compile_order }

# component.xml files under the repository paths make the catalog: vendor:library:name:version
proc update_ip_catalog {args} {
    ::si::opts $args {-rebuild 0 -scan_changes 0} update_ip_catalog
    foreach repo $::si::viv::repo_paths {
        foreach xml [concat [glob -nocomplain -directory $repo component.xml] \
                [glob -nocomplain -directory $repo */component.xml] [glob -nocomplain -directory $repo */*/component.xml]] {
            set fh [open $xml r]; set text [read $fh]; close $fh
            set v {}
            foreach tag {vendor library name version} {
                if {![regexp "<spirit:$tag>(\[^<\]+)</spirit:$tag>" $text - val]} { set v {}; break }
                lappend v $val
            }
            if {[llength $v] == 4} { dict set ::si::viv::catalog [join $v :] [file dirname $xml] }
        }
    }
}

proc add_files {args} {
    set o [::si::opts $args {-norecurse 0 -copy_to 1 -fileset 1 -scan_for_includes 0} add_files]
    ::si::viv::need_project
    foreach f [dict get $o args] {
        ::si::need_file $f "HDL/source file" add_files
        lappend ::si::viv::files [file normalize $f]
        if {[file isfile $f]} {
            set fh [open $f r]; set text [read $fh]; close $fh
            foreach {all m} [regexp -all -inline {(?:^|\n)\s*module\s+(\w+)} $text] {
                dict set ::si::viv::modules $m $text
            }
        }
    }
}

proc get_files {args} {
    set o [::si::opts $args {-filter 1 -of_objects 1 -quiet 0 -all 0 -compile_order 1 -used_in 1} get_files]
    set out {}
    foreach f [dict get $o args] {
        # a path, or a name the project's files (those added, and those the tool made) go by
        set hits [lsearch -all -inline -glob [concat $::si::viv::files $::si::virtual] "*/$f"]
        if {[llength $hits]} { lappend out {*}$hits; continue }
        ::si::need_file $f "file" get_files; lappend out $f
    }
    if {![llength [dict get $o args]]} { set out $::si::viv::files }
    return $out
}

# ---- block design: cells, pins, ports, nets -----------------------------------------------------------
proc create_bd_design {name} { ::si::viv::need_project; set ::si::viv::design $name
    set ::si::viv::bd [file join $::si::viv::dir $::si::viv::project.srcs sources_1 bd $name $name.bd]
    lappend ::si::virtual [file normalize $::si::viv::bd] }
proc ::si::viv::need_design {} { if {$::si::viv::design eq ""} { ::si::fail "no block design open" } }
proc ::si::viv::path {p} { return "/[string trim $p /]" }

proc create_bd_cell {args} {
    set o [::si::opts $args {-type 1 -vlnv 1 -reference 1 -name 1} create_bd_cell]
    ::si::viv::need_design
    set path [::si::viv::path [lindex [dict get $o args] 0]]
    set parent [file dirname $path]
    if {$parent ne "/" && ![dict exists $::si::viv::cells $parent]} { ::si::fail "parent cell $parent of $path does not exist" }
    if {[dict exists $::si::viv::cells $path]} { ::si::fail "cell $path exists already" }
    set type [dict get $o -type]
    if {[dict exists $o -reference]} {
        set m [dict get $o -reference]
        if {![dict exists $::si::viv::modules $m]} { ::si::fail "module $m is in none of the files added ([llength $::si::viv::files])" }
        dict set ::si::viv::cells $path [list module $m]
    } elseif {$type eq "ip"} {
        set v [dict get $o -vlnv]
        if {![dict exists $::si::viv::catalog $v] && ![::si::viv::vivado_ip $v]} {
            ::si::fail "IP $v is not in the catalog (repository paths: $::si::viv::repo_paths; packaged: [dict keys $::si::viv::catalog])"
        }
        dict set ::si::viv::cells $path [list ip $v]
    } elseif {$type eq "hier"} {
        dict set ::si::viv::cells $path [list hier {}]
    } else { ::si::fail "-type $type" }
    return "cell:$path"
}
# the IP Vivado ships (the Zynq shell's): the Xilinx library, any version
proc ::si::viv::vivado_ip {vlnv} {
    return [regexp {^xilinx\.com:ip:(processing_system7|zynq_ultra_ps_e|axi_interconnect|smartconnect|proc_sys_reset|clk_wiz|axi_gpio|xlconstant|xlconcat|axi_dma|system_ila|axi_register_slice):[0-9.]+$} $vlnv]
}

proc ::si::viv::pin_exists {path kind} {
    set cell [file dirname $path]; set pin [file tail $path]
    if {![dict exists $::si::viv::cells $cell]} { return 0 }
    lassign [dict get $::si::viv::cells $cell] ckind what
    # a packaged IP's ports are in HDL the stand-in does not have: any pin of it is taken
    switch $ckind {
        hier { return [dict exists $::si::viv::pins $path] }
        module { return [regexp -nocase "\\m${pin}(_tdata|_awaddr)?\\M" [dict get $::si::viv::modules $what]] }
        default { return 1 }
    }
}

proc create_bd_pin {args} {
    set o [::si::opts $args {-dir 1 -type 1 -from 1 -to 1} create_bd_pin]
    set path [::si::viv::path [lindex [dict get $o args] 0]]
    if {[lsearch {I O IO} [dict get $o -dir]] < 0} { ::si::fail "-dir [dict get $o -dir]" }
    if {[lindex [dict get $::si::viv::cells [file dirname $path]] 0] ne "hier"} { ::si::fail "$path: not in a hierarchy cell" }
    dict set ::si::viv::pins $path pin
}
proc create_bd_intf_pin {args} {
    set o [::si::opts $args {-mode 1 -vlnv 1} create_bd_intf_pin]
    set path [::si::viv::path [lindex [dict get $o args] 0]]
    if {[lsearch {Master Slave MirroredMaster MirroredSlave Monitor} [dict get $o -mode]] < 0} { ::si::fail "-mode [dict get $o -mode]" }
    if {![regexp {^xilinx\.com:interface:\w+:1\.0$} [dict get $o -vlnv]]} { ::si::fail "interface [dict get $o -vlnv]" }
    if {![dict exists $::si::viv::cells [file dirname $path]]} { ::si::fail "$path: cell [file dirname $path] does not exist" }
    dict set ::si::viv::pins $path intf
}
proc create_bd_port {args} {
    set o [::si::opts $args {-dir 1 -type 1 -from 1 -to 1 -freq_hz 1} create_bd_port]
    dict set ::si::viv::ports [lindex [dict get $o args] 0] port; return "port:[lindex [dict get $o args] 0]"
}
proc create_bd_intf_port {args} {
    set o [::si::opts $args {-mode 1 -vlnv 1} create_bd_intf_port]
    dict set ::si::viv::ports [lindex [dict get $o args] 0] intf; return "intf_port:[lindex [dict get $o args] 0]"
}

proc ::si::viv::get_pins {kind args} {
    set o [::si::opts $args {-of_objects 1 -of 1 -quiet 0 -filter 1 -hierarchical 0} get_bd_${kind}s]
    set out {}
    foreach p [dict get $o args] {
        set path [::si::viv::path $p]
        if {[string first * $path] >= 0} { lappend out "$kind:$path"; continue }
        if {![::si::viv::pin_exists $path $kind]} {
            ::si::fail "no $kind $path (cell [file dirname $path]: [expr {[dict exists $::si::viv::cells [file dirname $path]] ? [dict get $::si::viv::cells [file dirname $path]] : {not created}}])"
        }
        lappend out "$kind:$path"
    }
    return $out
}
proc get_bd_pins {args} { return [::si::viv::get_pins pin {*}$args] }
proc get_bd_intf_pins {args} {
    if {[lsearch $args -of] >= 0 || [lsearch $args -of_objects] >= 0} { return {} }  ;# net queries: none modelled
    return [::si::viv::get_pins intf_pin {*}$args]
}
proc get_bd_intf_nets {args} { return {} }
proc get_bd_cells {args} {
    set o [::si::opts $args {-quiet 0 -filter 1 -hierarchical 0 -of_objects 1} get_bd_cells]
    set out {}
    foreach c [dict get $o args] {
        set path [::si::viv::path $c]
        if {![dict exists $::si::viv::cells $path]} { ::si::fail "no cell $path" }
        lappend out "cell:$path"
    }
    return $out
}
proc ::si::viv::get_ports {kind args} {
    set o [::si::opts $args {-quiet 0 -filter 1 -of_objects 1} get_bd_ports]
    if {[dict exists $o -filter]} { return {} }  ;# property filters (AXI-lite ports): none modelled
    set out {}
    foreach p [dict get $o args] {
        set name [string trimleft $p /]
        if {![dict exists $::si::viv::ports $name]} { ::si::fail "no port $name (ports: [dict keys $::si::viv::ports])" }
        lappend out "$kind:$name"
    }
    return $out
}
proc get_bd_ports {args} { return [::si::viv::get_ports port {*}$args] }
proc get_bd_intf_ports {args} { return [::si::viv::get_ports intf_port {*}$args] }

proc ::si::viv::need_handles {cmd handles kinds} {
    if {[llength $handles] < 2} { ::si::fail "$cmd connects [llength $handles] objects" }
    foreach h $handles {
        if {[lsearch $kinds [lindex [split $h :] 0]] < 0} { ::si::fail "$cmd: $h is not a [join $kinds { or }]" }
    }
}
proc connect_bd_net {args} {
    set o [::si::opts $args {-net 1} connect_bd_net]
    ::si::viv::need_handles connect_bd_net [concat {*}[dict get $o args]] {pin port}
}
proc connect_bd_intf_net {args} {
    set o [::si::opts $args {-intf_net 1 -boundary_type 1} connect_bd_intf_net]
    ::si::viv::need_handles connect_bd_intf_net [concat {*}[dict get $o args]] {intf_pin intf_port}
}
proc ::si::viv::external {kind args} {
    set o [::si::opts $args {-name 1} make_bd_${kind}s_external]
    foreach h [concat {*}[dict get $o args]] {
        if {![string match "${kind}:*" $h]} { ::si::fail "$h is not a $kind" }
        set base [file tail [lindex [split $h :] 1]]
        set name [expr {[dict exists $o -name] ? [dict get $o -name] : "${base}_0"}]
        dict set ::si::viv::ports $name [expr {$kind eq "pin" ? "port" : "intf"}]
    }
}
proc make_bd_pins_external {args} { ::si::viv::external pin {*}$args }
proc make_bd_intf_pins_external {args} { ::si::viv::external intf_pin {*}$args }

proc save_bd_design {args} { ::si::viv::need_design }
proc validate_bd_design {args} { ::si::viv::need_design }
proc apply_bd_automation {args} {
    set o [::si::opts $args {-rule 1 -config 1} apply_bd_automation]
    if {![string match xilinx.com:bd_rule:* [dict get $o -rule]]} { ::si::fail "rule [dict get $o -rule]" }
}
proc assign_bd_address {args} { ::si::opts $args {-offset 1 -range 1 -target_address_space 1 -quiet 0} assign_bd_address }
proc get_bd_addr_spaces {args} { return {} }
proc get_bd_addr_segs {args} {
    set o [::si::opts $args {-quiet 0 -of_objects 1 -filter 1 -excluded 0} get_bd_addr_segs]
    set out {}
    foreach seg [dict get $o args] {
        set cell "/[lindex [split [string trim $seg /] /] 0]"
        if {![dict exists $::si::viv::cells $cell]} { ::si::fail "no cell $cell for address segment $seg" }
        lappend out "addrseg:$seg"
    }
    return $out
}
# the IP definitions Vivado ships, as FINN's Zynq shell looks them up
set ::si::viv::ipdefs {xilinx.com:ip:processing_system7:5.5 xilinx.com:ip:zynq_ultra_ps_e:3.5
    xilinx.com:ip:axi_interconnect:2.1 xilinx.com:ip:smartconnect:1.0 xilinx.com:ip:clk_wiz:6.0
    xilinx.com:ip:proc_sys_reset:5.0 xilinx.com:ip:axi_gpio:2.0 xilinx.com:ip:xlconstant:1.1}
proc get_ipdefs {args} {
    set o [::si::opts $args {-all 0 -filter 1 -quiet 0} get_ipdefs]
    set out {}
    foreach v $::si::viv::ipdefs {
        set name [lindex [split $v :] 2]
        if {[llength [dict get $o args]] && ![string match [lindex [dict get $o args] 0] $v]} { continue }
        if {[dict exists $o -filter] && [regexp {NAME == (\w+)} [dict get $o -filter] - want] && $want ne $name} { continue }
        lappend out "ipdef:$v"
    }
    if {![llength $out]} { ::si::fail "no IP definition matches $args" }
    return $out
}

# make_wrapper's output is a file only the real tool writes: named as one a later command may use
proc make_wrapper {args} {
    set o [::si::opts $args {-files 1 -top 0 -fileset 1 -import 0} make_wrapper]
    foreach bd [dict get $o -files] {
        set name [file rootname [file tail $bd]]
        foreach d {hdl} { lappend ::si::virtual [file normalize [file join [file dirname $bd] $d ${name}_wrapper.v]] }
        dict set ::si::viv::modules ${name}_wrapper "module ${name}_wrapper"
    }
}

# ---- properties -------------------------------------------------------------------------------------------
proc set_property {args} {
    set o [::si::opts $args {-dict 1 -name 1 -value 1 -objects 1 -quiet 0} set_property]
    set pos [dict get $o args]
    if {[dict exists $o -dict]} { set objs [lindex $pos 0] } elseif {[dict exists $o -name]} {
        set objs [dict get $o -objects]; set pos [list [dict get $o -name] [dict get $o -value]]
    } else {
        if {[llength $pos] != 3} { ::si::fail "expects NAME VALUE OBJECTS, got $pos" }
        lassign $pos name value objs
        if {$name eq "ip_repo_paths"} {
            foreach p $value { ::si::need_dir $p "IP repository" set_property }
            set ::si::viv::repo_paths [lsort -unique [concat $::si::viv::repo_paths $value]]
        } elseif {$name eq "board_part"} {
            if {[lsearch -exact [::si::installed board-part] $value] < 0} { ::si::fail "board part $value is not installed" }
            set ::si::viv::board_part $value
        } elseif {$name eq "name"} {
            foreach h $objs {
                lassign [split $h :] kind old
                if {[lsearch {port intf_port} $kind] >= 0} {
                    dict set ::si::viv::ports $value [dict get $::si::viv::ports $old]; dict unset ::si::viv::ports $old
                }
            }
        }
    }
    if {![llength $objs]} { ::si::fail "no objects to set [lindex $pos 0] on" }
}
proc get_property {name obj} {
    switch -glob -- $name {
        DIRECTORY { return $::si::viv::dir }
        ip_repo_paths { return $::si::viv::repo_paths }
        NAME { return [file tail [lindex [split $obj :] end]] }
        VLNV { return [join [lrange [split $obj :] 1 end] :] }
        BOARD_PART_REPO_PATHS { return {} }
        CONFIG.ADDR_WIDTH { return 12 }
        default { return "" }
    }
}

# ---- runs, synthesis, reports: checked, never run -------------------------------------------------------
proc launch_runs {args} {
    set o [::si::opts $args {-jobs 1 -to_step 1 -scripts_only 0} launch_runs]
    ::si::viv::need_project
    if {[dict exists $o -to_step] && [dict get $o -to_step] ne "write_bitstream"} { ::si::fail "-to_step [dict get $o -to_step]" }
    puts "INFO: \[stand-in\] [dict get $o args] checked, not run (no synthesis here)"
}
proc get_runs {args} { return "run:[lindex $args end]" }
proc wait_on_run {args} { }
proc open_run {args} { ::si::opts $args {-name 1} open_run }
proc opt_design {args} { }
proc write_verilog {args} {
    set o [::si::opts $args {-mode 1 -force 0 -file 1} write_verilog]
    lappend ::si::virtual [file normalize [expr {[dict exists $o -file] ? [dict get $o -file] : [lindex [dict get $o args] 0]}]]
}
proc write_checkpoint {args} { set o [::si::opts $args {-force 0} write_checkpoint]; lappend ::si::virtual [file normalize [lindex [dict get $o args] 0]] }
proc write_xdc {args} { lappend ::si::virtual [file normalize [lindex $args end]] }
proc report_utilization {args} { ::si::opts $args {-file 1 -hierarchical 0 -hierarchical_depth 1 -format 1 -cells 1} report_utilization }

# ---- IP packaging (ipx::): the stitched design's component.xml, marked as a stand-in -----------------
namespace eval ::ipx {}
proc ipx::package_project {args} {
    set o [::si::opts $args {-root_dir 1 -vendor 1 -library 1 -taxonomy 1 -module 1 -import_files 0} ipx::package_project]
    if {[dict get $o -module] ne $::si::viv::design} { ::si::fail "-module [dict get $o -module] is not the open block design" }
    set ::si::viv::core [join [list [dict get $o -vendor] [dict get $o -library] [dict get $o -module] 1.0] :]
    set ::si::viv::core_dir [dict get $o -root_dir]
    file mkdir $::si::viv::core_dir
}
proc ipx::current_core {} { return "core:$::si::viv::core" }
proc ipx::find_open_core {vlnv} { if {$vlnv ne $::si::viv::core} { ::si::fail "no open core $vlnv (open: $::si::viv::core)" }; return "core:$vlnv" }
proc ipx::create_xgui_files {core} { }
proc ipx::get_bus_interfaces {args} { return "busif:[lindex $args end]" }
proc ipx::get_bus_parameters {args} { return "busparams:[lindex $args end]" }
proc ipx::get_address_spaces {args} { return {} }
proc ipx::remove_segment {args} { }
proc ipx::add_file_group {args} { return "filegroup:[lindex $args end-1]" }
proc ipx::get_file_groups {args} { return "filegroup:[lindex $args 0]" }
proc ipx::add_file {path group} { ::si::need_file [file join $::si::viv::core_dir $path] "IP file" ipx::add_file; return "ipfile:$path" }
proc ipx::get_files {args} { return {} }
proc ipx::remove_file {args} { }
proc ipx::remove_all_file {args} { }
proc ipx::remove_file_group {args} { }
proc ipx::add_memory_map {args} { return memmap }
proc ipx::add_address_block {args} { return block }
proc ipx::update_checksums {core} { }
proc ipx::save_core {core} {
    set fh [open [file join $::si::viv::core_dir component.xml] w]
    lassign [split $::si::viv::core :] v l n r
    puts $fh "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- stand-in: laid out by the test suite's vivado, no HDL -->\
        \n<spirit:component xmlns:spirit=\"http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009\">\
        \n  <spirit:vendor>$v</spirit:vendor>\n  <spirit:library>$l</spirit:library>\n  <spirit:name>$n</spirit:name>\
        \n  <spirit:version>$r</spirit:version>\n</spirit:component>"
    close $fh
}
