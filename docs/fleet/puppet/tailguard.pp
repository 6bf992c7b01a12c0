# tailguard on a build runner: install the package, manage one drop-in,
# validate every change before it reaches the agent, and keep the service
# enabled and running.
#
#   class { 'tailguard':
#     archive_path => '/var/lib/tailguard/archive.jsonl',
#     environment  => { 'TAILGUARD_LOG' => 'info' },
#   }
class tailguard (
  String $package_ensure               = 'installed',
  String $dropin_name                  = '50-puppet.toml',
  Array[String] $archive_inputs        = ['host_logs'],
  String $archive_path                 = '/var/lib/tailguard/archive.jsonl',
  Hash[String, String] $environment    = {},
  Boolean $service_enable              = true,
  # `reload` validates and sends SIGHUP (the agent swaps its configuration
  # without losing lines); `restart` stops and starts it.
  Enum['reload', 'restart'] $apply_with = 'reload',
) {
  package { 'tailguard':
    ensure => $package_ensure,
  }

  $inputs = $archive_inputs.map |$i| { "\"${i}\"" }.join(', ')
  file { "/etc/tailguard/conf.d/${dropin_name}":
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => @("TOML"),
      # Managed by Puppet (class tailguard); local edits are overwritten.
      [sinks.fleet_archive]
      type = "file"
      inputs = [${inputs}]
      path = "${archive_path}"
      append = true
      | TOML
    require => Package['tailguard'],
  }

  if !empty($environment) {
    $env_lines = $environment.keys.sort.map |$k| { "${k}=\"${environment[$k]}\"" }
    file { '/etc/default/tailguard':
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0600',
      content => "# Managed by Puppet (class tailguard).\n${env_lines.join("\n")}\n",
      require => Package['tailguard'],
      notify  => Exec['tailguard-validate'],
    }
    # The environment is read only when the service starts: restart (if
    # running) once the configuration validated.
    exec { 'tailguard-restart-for-environment':
      command     => '/bin/systemctl try-restart tailguard.service',
      refreshonly => true,
      subscribe   => File['/etc/default/tailguard'],
      require     => [Exec['tailguard-validate'], Service['tailguard']],
    }
  }

  # Runs only when a managed file changed. If it fails, Puppet skips the
  # service refresh below, so the running agent keeps its configuration
  # (the unit's ExecReload= validates again as well).
  exec { 'tailguard-validate':
    command     => '/usr/bin/tailguard validate --config-dir /etc/tailguard',
    refreshonly => true,
    logoutput   => true,
    subscribe   => File["/etc/tailguard/conf.d/${dropin_name}"],
  }

  service { 'tailguard':
    ensure    => running,
    enable    => $service_enable,
    restart   => "/bin/systemctl ${apply_with} tailguard.service",
    subscribe => Exec['tailguard-validate'],
  }
}
