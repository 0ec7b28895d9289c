"""The app's behaviour, one responsibility a module, mixed into ``tui.app.ScalectlApp``.

* :mod:`tui.controllers.refresh`: the refresh tick (reads in a worker thread, shows the
  frozen results on the UI thread);
* :mod:`tui.controllers.job_actions`: cancel, requeue and open the selected job;
* :mod:`tui.controllers.planning`: the Planner tab's search and launch.

Each is a mixin of the one ``App``; the state they share is created in
``ScalectlApp.__init__`` and declared (for the type checker) in the mixin that uses it.
"""
