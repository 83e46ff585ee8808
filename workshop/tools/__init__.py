"""The course's own tools for instructors and maintainers: the course report (every notebook run
headless, timed), and the lab's command line."""
